// tetra compile: a model and its tuned schedules become a library an application links
// (runtime/aot/aot_compiler.h).
#include <iostream>
#include <map>

#include "importer/error.h"
#include "runtime/aot/aot_compiler.h"
#include "runtime/model.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/model_inputs.h"
#include "dsl/object_cache.h"
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

void compile(const CompileOptions& opt) {
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
  cmd->add_option("--target", opt->target, "host (default) or an x86-64 target this machine runs, such as x86-64-avx2");
  cmd->add_option("--db", opt->db, "tuning database folder (default: tuning_db/ beside the model, if any)");
  cmd->add_option("--shape", opt->shapes, "NAME=D0,D1,... binds the dynamic dims of an input (libraries have fixed shapes)");
  cmd->add_flag("--shared", opt->shared, "also build libNAME.so");
  cmd->add_flag("--weights-file", opt->weights_file, "keep the graph and weights in NAME.weights beside the library");
  cmd->add_flag("--int8-activations", opt->int8_activations, kInt8ActivationsHelp);
  cmd->add_option("--kernel-cache", opt->kernel_cache, "the JIT's kernel cache, for the run on sample inputs");
  cmd->callback([opt] { compile(*opt); });
}

}  // namespace tetra::cli
