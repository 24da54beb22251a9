// tetra compile: a model and its tuned schedules become a library an application links
// (runtime/aot/aot_compiler.h).
#include <deque>
#include <iostream>
#include <map>

#include "dsl/core/amd_arch.h"
#include "dsl/object_cache.h"
#include "importer/error.h"
#include "runtime/aot/aot_compiler.h"
#include "runtime/aot/gpu_kernels.h"
#include "runtime/model.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/model_inputs.h"
#include "tuner/database_source.h"

namespace tetra::cli {
namespace {

struct CompileOptions {
  std::string model;
  std::string target = "host";
  std::string db;
  std::string out_dir;
  std::string name;
  bool shared = false;
  bool weights_file = false;
  bool int8_activations = false;
  std::vector<std::string> shapes;
  std::string kernel_cache = dsl::default_kernel_cache_dir();
};

// "hip:gfx90a,gfx942,...": one target per arch; empty for any other --target.
std::vector<dsl::TargetSpec> hip_targets(const std::string& text) {
  if (text.rfind("hip:", 0) != 0 && text.rfind("hip-", 0) != 0) return {};
  std::vector<dsl::TargetSpec> targets;
  std::string archs = text.substr(4);
  for (size_t start = 0; start <= archs.size();) {
    size_t comma = std::min(archs.find(',', start), archs.size());
    std::string arch = archs.substr(start, comma - start);
    check(arch != "host", ErrorKind::Unsupported,
          "--target " + text +
              ": a library of GPU kernels with CPU kernels beside them is not built yet; "
              "compile the host library separately");
    auto target = dsl::parse_target("hip:" + arch);
    check(target.ok(), ErrorKind::Invalid, "--target: " + (target.ok() ? "" : target.failure().describe()));
    dsl::Status known = dsl::check_amd_arch(arch);
    check(known.ok(), ErrorKind::Unsupported, "--target: " + (known.ok() ? "" : known.failure().describe()));
    for (const dsl::TargetSpec& t : targets)
      check(t.gpu_arch != arch, ErrorKind::Invalid, "--target " + text + ": " + arch + " is named twice");
    targets.push_back(target.value());
    start = comma + 1;
  }
  return targets;
}

// The model's GPU kernels for each arch (runtime/aot/gpu_kernels.h).
void compile_gpu(const CompileOptions& opt, const std::vector<dsl::TargetSpec>& targets) {
  Graph graph = load_model_with_fixed_shapes(opt.model, opt.shapes);
  apply_int8_activations(graph, opt.int8_activations);
  GpuLibraryOptions lib;
  lib.name = opt.name.empty() ? "model" : opt.name;
  lib.targets = targets;
  lib.model = opt.model;
  lib.out_dir = opt.out_dir;
  // Each arch's records, from the one database folder (a deque: the sources keep references).
  std::deque<std::optional<tuner::TuningDatabase>> dbs;
  std::vector<std::unique_ptr<tuner::DatabaseScheduleSource>> sources;
  for (const dsl::TargetSpec& t : targets) {
    dbs.push_back(open_tuning_database(opt.db, opt.model, t.name));
    sources.push_back(dbs.back() ? std::make_unique<tuner::DatabaseScheduleSource>(*dbs.back()) : nullptr);
    lib.schedules.push_back(sources.back().get());
  }
  std::cout << "compiling the GPU kernels of '" << opt.model << "' for " << opt.target << " into " << opt.out_dir
            << std::endl;
  for (const std::string& f : compile_gpu_kernels(graph, lib, std::cout))
    std::cout << "wrote " << opt.out_dir << "/" << f << "\n";
}

void compile(const CompileOptions& opt) {
  if (std::vector<dsl::TargetSpec> gpus = hip_targets(opt.target); !gpus.empty()) return compile_gpu(opt, gpus);
  auto target = dsl::parse_target(opt.target);
  check(target.ok(), ErrorKind::Invalid, "--target: " + (target.ok() ? "" : target.failure().describe()));
  std::map<std::string, Shape> shapes;
  for (const std::string& s : opt.shapes) shapes.insert(parse_shape_binding(s));
  Graph graph = load_model(opt.model, shapes);
  apply_int8_activations(graph, opt.int8_activations);
  InputOptions sample;
  sample.shapes = opt.shapes;
  sample.random_inputs = true;
  TensorMap inputs = gather_inputs(graph, sample);

  // Schedules tuned for the library's target, not for this machine.
  std::optional<tuner::TuningDatabase> db = open_tuning_database(opt.db, opt.model, target.value().name);
  std::optional<tuner::DatabaseScheduleSource> tuned;
  if (db) tuned.emplace(*db);

  LibraryOptions lib;
  lib.name = opt.name.empty() ? "model" : opt.name;
  lib.target = target.value();
  lib.schedules = tuned ? &*tuned : nullptr;
  lib.out_dir = opt.out_dir;
  lib.shared = opt.shared;
  lib.weights_file = opt.weights_file;
  lib.runtime_lib_dir = default_runtime_lib_dir();
  lib.kernel_cache = opt.kernel_cache;
  std::cout << "compiling '" << opt.model << "' for " << lib.target.name << " into " << opt.out_dir << std::endl;
  LibraryReport report = compile_model_library(graph, inputs, lib, std::cout);
  std::cout << report.kernels << " kernels compiled ahead of time, " << report.tuned
            << " with tuned schedules from the database, " << report.kernels - report.tuned
            << " with default schedules or fixed pipelines\n";
  for (const std::string& f : report.files) std::cout << "wrote " << opt.out_dir << "/" << f << "\n";
}

}  // namespace

void add_compile_command(CLI::App& app) {
  auto opt = std::make_shared<CompileOptions>();
  CLI::App* cmd = app.add_subcommand("compile", "Compile a model ahead of time into a library with a C API");
  cmd->add_option("model", opt->model, "ONNX model file")->required();
  cmd->add_option("-o,--output", opt->out_dir, "output folder (include/, lib/, lib/cmake/, lib/pkgconfig/)")->required();
  cmd->add_option("--name", opt->name, "library and API prefix, a C identifier (default: model)");
  cmd->add_option("--target", opt->target,
                  "host (default), an x86-64 target this machine runs (x86-64-avx2), or AMD GPUs "
                  "(hip:gfx90a,gfx942,...: their code objects, launch plans and NAME.kernels.json)");
  cmd->add_option("--db", opt->db, "tuning database folder (default: tuning_db/ beside the model, if any)");
  cmd->add_option("--shape", opt->shapes, "NAME=D0,D1,... binds the dynamic dims of an input (libraries have fixed shapes)");
  cmd->add_flag("--shared", opt->shared, "also build libNAME.so");
  cmd->add_flag("--weights-file", opt->weights_file, "keep the graph and weights in NAME.weights beside the library");
  cmd->add_flag("--int8-activations", opt->int8_activations, kInt8ActivationsHelp);
  cmd->add_option("--kernel-cache", opt->kernel_cache, "the JIT's kernel cache, for the run on sample inputs");
  cmd->callback([opt] { compile(*opt); });
}

}  // namespace tetra::cli
