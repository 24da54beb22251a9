// Parsing helpers shared by the CLI subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "importer/graph.h"
#include "importer/tensor.h"
#include "runtime/executor.h"
#include "tuner/database.h"

namespace tetra::cli {

// "NAME=1,3,320,320" -> {NAME, shape}; fails clearly on bad syntax.
std::pair<std::string, Shape> parse_shape_binding(const std::string& text);
// The model with every dynamic input dim bound by `shape_bindings` ("NAME=dims", --shape): what kernels
// built ahead of time for fixed shapes need. An input left unbound is an error naming it.
Graph load_model_with_fixed_shapes(const std::string& model, const std::vector<std::string>& shape_bindings);
// "NAME=PATH" -> {NAME, PATH}.
std::pair<std::string, std::string> parse_file_binding(const std::string& text);

// --threads N for compiled kernels, 1 to kMaxThreads; left out it stays 0 (one per core).
constexpr int kMaxThreads = 1024;
CLI::Option* add_threads_option(CLI::App* cmd, int& threads);

// --kernel-cache, --db, --target and --fallback, shared by run and bench; `verb` ("run", "time") says what
// they do with the model.
void add_target_options(CLI::App* cmd, std::string& kernel_cache, std::string& db, std::string& target,
                        std::string& fallback, const std::string& verb);

// --int8-activations and --f16-activations (at most one), shared by run, bench, tune and compile.
void add_activation_flags(CLI::App* cmd, ActivationOptIn& opt_in);
// The flag that asks for `opt_in` ("" for Exact), as a command line passes it on.
std::string activation_flag(ActivationOptIn opt_in);
// Marks the graph's int4 MatMuls for `opt_in`; says how many on stderr.
void apply_activation_opt_in(Graph& graph, ActivationOptIn opt_in);

// The tuning database for `model`: `db_dir` when given (it must be an existing folder), else a tuning_db/ folder beside the model
// when it holds records; nullopt when there is none. Records are those of `target` (default: this
// machine's). Notes about skipped records go to stderr.
std::optional<tuner::TuningDatabase> open_tuning_database(const std::string& db_dir, const std::string& model,
                                                          const std::string& target = "");

// This executable's path: the tuning workers run it, and tetra-device lies beside it.
std::string this_executable();

// A GPU target's device on this machine, as tetra-device (beside this executable) finds it.
struct GpuDeviceInfo {
  std::string program;  // tetra-device
  std::string name;     // the device's name
  std::string target;   // the target, canonical: "opencl" becomes the device's opencl-... name
};
// "hip" or "cuda" alone, any case: this machine's device of that dialect, whatever its arch. The dialect
// ("hip" or "cuda"), or "" for any other target.
std::string bare_gpu_dialect(const std::string& target);
// `target` (opencl, opencl-DEVICE, hip:ARCH or cuda:sm_NN) must be this machine's device: an OpenCL
// target names it, a HIP or CUDA one its arch; opencl, hip and cuda alone take the device's (so the
// returned target is "hip-gfx942" for "hip" on an MI300X). A missing tetra-device, runtime, device or
// arch is an error that says which; `purpose` says what the device is for ("to run the candidates"),
// and a HIP target's error ends with `hip_hint`.
GpuDeviceInfo find_gpu_device(const std::string& target, const std::string& purpose, const std::string& hip_hint = "");

}  // namespace tetra::cli
