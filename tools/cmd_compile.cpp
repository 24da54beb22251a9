// tetra compile: a model and its tuned schedules become a library an application links
// (runtime/aot/aot_compiler.h).
#include <algorithm>
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
  ActivationOptIn activations = ActivationOptIn::Exact;
  std::vector<std::string> shapes;
  std::string kernel_cache = dsl::default_kernel_cache_dir();
};

// What --target names: a CPU target for a library's CPU kernels, and GPU targets, in the order given.
// "hip:gfx90a,gfx942,opencl,host": after "hip:", bare gfx names are more AMD archs.
struct CompileTargets {
  std::optional<dsl::TargetSpec> cpu;
  std::vector<dsl::TargetSpec> gpus;
  bool only_hip() const {
    return !cpu && std::all_of(gpus.begin(), gpus.end(), [](auto& t) { return t.family == dsl::TargetFamily::Hip; });
  }
};

CompileTargets parse_compile_targets(const std::string& text) {
  CompileTargets targets;
  bool in_hip = false;
  for (size_t start = 0; start <= text.size();) {
    size_t comma = std::min(text.find(',', start), text.size());
    std::string item = text.substr(start, comma - start);
    start = comma + 1;
    const bool hip = item.rfind("hip:", 0) == 0 || item.rfind("hip-", 0) == 0;
    in_hip = hip || (in_hip && item.rfind("gfx", 0) == 0);
    if (in_hip) item = "hip:" + (hip ? item.substr(4) : item);
    auto target = dsl::parse_target(item);
    check(target.ok(), ErrorKind::Invalid, "--target: " + (target.ok() ? "" : target.failure().describe()));
    if (in_hip) {
      dsl::Status known = dsl::check_amd_arch(target.value().gpu_arch);
      check(known.ok(), ErrorKind::Unsupported, "--target: " + (known.ok() ? "" : known.failure().describe()));
    }
    if (target.value().is_cpu()) {
      check(!targets.cpu, ErrorKind::Invalid, "--target " + text + ": a library has one CPU target");
      targets.cpu = target.value();
      continue;
    }
    for (const dsl::TargetSpec& t : targets.gpus)
      check(t.name != target.value().name, ErrorKind::Invalid, "--target " + text + ": " + item + " is named twice");
    targets.gpus.push_back(target.value());
  }
  return targets;
}

// Each target's tuning records, from the one database folder (a deque: the sources keep references to
// its elements, which a deque never moves).
struct TargetSchedules {
  std::deque<std::optional<tuner::TuningDatabase>> dbs;
  std::vector<std::unique_ptr<tuner::DatabaseScheduleSource>> sources;  // null where a target has none

  TargetSchedules(const CompileOptions& opt, const std::vector<dsl::TargetSpec>& targets) {
    for (const dsl::TargetSpec& t : targets) {
      dbs.push_back(open_tuning_database(opt.db, opt.model, t.name));
      sources.push_back(dbs.back() ? std::make_unique<tuner::DatabaseScheduleSource>(*dbs.back()) : nullptr);
    }
  }
  std::vector<const ScheduleSource*> pointers() const {
    std::vector<const ScheduleSource*> p;
    for (const auto& s : sources) p.push_back(s.get());
    return p;
  }
};

// The model's GPU kernels for each arch (runtime/aot/gpu_kernels.h).
void compile_gpu(const CompileOptions& opt, const std::vector<dsl::TargetSpec>& targets) {
  Graph graph = load_model_with_fixed_shapes(opt.model, opt.shapes);
  apply_activation_opt_in(graph, opt.activations);
  GpuLibraryOptions lib;
  lib.name = opt.name.empty() ? "model" : opt.name;
  lib.targets = targets;
  lib.model = opt.model;
  lib.out_dir = opt.out_dir;
  const TargetSchedules tuned(opt, targets);
  lib.schedules = tuned.pointers();
  std::cout << "compiling the GPU kernels of '" << opt.model << "' for " << opt.target << " into " << opt.out_dir
            << std::endl;
  for (const std::string& f : compile_gpu_kernels(graph, lib, std::cout))
    std::cout << "wrote " << opt.out_dir << "/" << f << "\n";
}

void compile(const CompileOptions& opt) {
  CompileTargets targets = parse_compile_targets(opt.target);
  if (!targets.gpus.empty() && targets.only_hip()) return compile_gpu(opt, targets.gpus);
  check(bool(targets.cpu), ErrorKind::Invalid,
        "--target " + opt.target +
            ": a model library runs on its CPU kernels where none of its GPUs is present; name its CPU "
            "target as well (" +
            opt.target + ",host)");
  const dsl::TargetSpec& target = *targets.cpu;
  std::map<std::string, Shape> shapes;
  for (const std::string& s : opt.shapes) shapes.insert(parse_shape_binding(s));
  Graph graph = load_model(opt.model, shapes);
  apply_activation_opt_in(graph, opt.activations);
  InputOptions sample;
  sample.shapes = opt.shapes;
  sample.random_inputs = true;
  TensorMap inputs = gather_inputs(graph, sample);

  // Schedules tuned for the library's target, not for this machine.
  std::optional<tuner::TuningDatabase> db = open_tuning_database(opt.db, opt.model, target.name);
  std::optional<tuner::DatabaseScheduleSource> tuned;
  if (db) tuned.emplace(*db);
  const TargetSchedules gpu_tuned(opt, targets.gpus);

  LibraryOptions lib;
  lib.name = opt.name.empty() ? "model" : opt.name;
  lib.target = target;
  lib.gpu_targets = targets.gpus;
  lib.gpu_schedules = gpu_tuned.pointers();
  lib.schedules = tuned ? &*tuned : nullptr;
  lib.out_dir = opt.out_dir;
  lib.shared = opt.shared;
  lib.weights_file = opt.weights_file;
  lib.runtime_lib_dir = default_runtime_lib_dir();
  lib.kernel_cache = opt.kernel_cache;
  std::cout << "compiling '" << opt.model << "' for " << opt.target << " into " << opt.out_dir << std::endl;
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
                  "host (default) or an x86-64 target this machine runs (x86-64-avx2); AMD GPUs alone "
                  "(hip:gfx90a,gfx942,...: their kernels' code objects, launch plans and NAME.kernels.json); "
                  "or GPUs and a CPU target (hip:gfx90a,gfx942,cuda:sm_90,opencl,host): one library that runs "
                  "the whole model on the first of those GPUs present, else on the CPU");
  cmd->add_option("--db", opt->db, "tuning database folder (default: tuning_db/ beside the model, if any)");
  cmd->add_option("--shape", opt->shapes, "NAME=D0,D1,... binds the dynamic dims of an input (libraries have fixed shapes)");
  cmd->add_flag("--shared", opt->shared, "also build libNAME.so");
  cmd->add_flag("--weights-file", opt->weights_file, "keep the graph and weights in NAME.weights beside the library");
  add_activation_flags(cmd, opt->activations);
  cmd->add_option("--kernel-cache", opt->kernel_cache, "the JIT's kernel cache, for the run on sample inputs");
  cmd->callback([opt] { compile(*opt); });
}

}  // namespace tetra::cli
