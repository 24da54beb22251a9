// tetra run: evaluate a model on inputs from files (the ONNX backend test layout) or random data.
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "dsl/object_cache.h"
#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/jit_kernel_source.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "runtime/tensor_io.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/gpu_run.h"
#include "tools/model_inputs.h"
#include "tuner/database_source.h"

namespace tetra::cli {
namespace fs = std::filesystem;

namespace {

struct RunOptions {
  std::string model;
  std::string output_dir;
  std::string backend = "halide";
  bool check_reference = false;
  bool explain = false;
  ActivationOptIn activations = ActivationOptIn::Exact;
  int threads = 0;
  std::string db;
  std::string target;  // "": this machine
  std::string fallback;  // "cpu": run on the CPU when the GPU target's device is missing
  std::string kernel_cache = dsl::default_kernel_cache_dir();
  InputOptions inputs;
};

// ONNX backend test tolerance: |got - expected| <= atol + rtol * |expected|.
constexpr double kAtol = 1e-7;
constexpr double kRtol = 1e-3;

// Prints the error of each output against the expected files; returns false when any is outside
// the ONNX backend tolerance.
bool compare_outputs(const Graph& graph, const TensorMap& outputs, const std::vector<std::string>& expected_files) {
  bool ok = true;
  check(expected_files.size() == graph.outputs.size(), ErrorKind::Invalid,
        "the test data holds " + std::to_string(expected_files.size()) + " outputs but the model has " +
            std::to_string(graph.outputs.size()));
  for (size_t i = 0; i < expected_files.size(); ++i) {
    const std::string& name = graph.outputs[i].name;
    const Tensor& got = outputs.at(name);
    Tensor expected = read_tensor_pb(expected_files[i]).tensor;
    std::cout << "output " << i << " '" << name << "': ";
    if (got.dtype() != expected.dtype() || got.shape() != expected.shape()) {
      std::cout << "MISMATCH: got " << dtype_name(got.dtype()) << shape_str(got.shape()) << ", expected "
                << dtype_name(expected.dtype()) << shape_str(expected.shape()) << "\n";
      ok = false;
      continue;
    }
    double max_abs = 0, max_rel = 0;
    int64_t bad = 0;
    for (int64_t k = 0; k < got.size(); ++k) {
      double g = got.get(k), e = expected.get(k);
      if (std::isnan(e) && std::isnan(g)) continue;
      double diff = std::fabs(g - e);
      if (std::isnan(diff)) diff = INFINITY;
      max_abs = std::max(max_abs, diff);
      if (e != 0) max_rel = std::max(max_rel, diff / std::fabs(e));
      if (!(diff <= kAtol + kRtol * std::fabs(e))) ++bad;
    }
    std::cout << "max abs error " << std::setprecision(3) << max_abs << ", max rel error " << max_rel;
    if (bad) std::cout << "  FAIL (" << bad << " of " << got.size() << " elements outside tolerance)";
    std::cout << "\n";
    ok = ok && bad == 0;
  }
  return ok;
}

// --check: the backend's outputs against the reference evaluator's, with a tolerance for fp32
// arithmetic in another order: max abs error <= 1e-4 (2e-3 for fp16) times (1 + the largest reference
// magnitude). Integer outputs must match exactly. With an activation opt-in the reference stays exact:
// the error printed is the mode's accuracy, and 5e-2 (int8) or 1e-2 (float16: each activation rounded by
// up to 2^-11, in every int4 MatMul) only catches a broken kernel.
bool check_against_reference(const Graph& graph, const TensorMap& inputs, const TensorMap& outputs,
                             ActivationOptIn activations) {
  TensorMap expected = run_reference(graph, inputs);
  bool ok = true;
  for (const ValueInfo& out : graph.outputs) {
    const Tensor& got = outputs.at(out.name);
    const Tensor& ref = expected.at(out.name);
    double max_abs = 0, scale = 0;
    for (int64_t k = 0; k < ref.size(); ++k) scale = std::max(scale, std::fabs(ref.get(k)));
    for (int64_t k = 0; k < ref.size(); ++k) max_abs = std::max(max_abs, std::fabs(got.get(k) - ref.get(k)));
    double relative = !is_float(ref.dtype())                    ? 0
                      : activations == ActivationOptIn::Int8    ? 5e-2
                      : activations == ActivationOptIn::Float16 ? 1e-2
                      : ref.dtype() == DType::Float16           ? 2e-3
                                                                : 1e-4;
    double tolerance = relative * (1 + scale);
    bool pass = got.shape() == ref.shape() && max_abs <= tolerance;
    std::cout << "check '" << out.name << "' against the reference: max abs error " << std::setprecision(3) << max_abs
              << " = " << max_abs / std::max(scale, 1e-30) << " of the largest |value| " << scale << " (tolerance "
              << tolerance << ")" << (pass ? "" : "  FAIL") << "\n";
    ok = ok && pass;
  }
  return ok;
}

void report(const RunOptions& opt, const Graph& graph, const TensorMap& inputs, const TensorMap& outputs,
            Backend backend);

// The whole model on this machine's GPU (gpu_run.h).
TensorMap run_gpu(const RunOptions& opt, Graph& graph, const TensorMap& inputs) {
  check(opt.backend == "halide", ErrorKind::Invalid,
        "--target " + opt.target + " runs GPU kernels, not --backend " + opt.backend);
  GpuRun run = run_on_gpu(opt.model, inputs, opt.target, opt.db, 0, opt.activations);
  graph = std::move(run.graph);
  std::cout << "device: " << run.device << " (" << run.target << "), " << run.launches << " kernel launches, "
            << std::setprecision(3) << run.first_ms << " ms with uploads\n";
  if (opt.explain)
    for (const auto& [node, what] : run.kernels) std::cout << "kernel " << node << ": " << what << "\n";
  return std::move(run.outputs);
}

void run(const RunOptions& given) {
  RunOptions opt = given;
  opt.target = target_or_fallback(given.target, given.fallback);
  if (!opt.target.empty() && is_gpu_target(opt.target)) {
    Graph graph = load_model(opt.model);
    TensorMap inputs = gather_inputs(graph, opt.inputs);
    TensorMap outputs = run_gpu(opt, graph, inputs);
    report(opt, graph, inputs, outputs, Backend::Halide);
    return;
  }
  Backend backend = parse_backend(opt.backend);
  // The kernels' target, canonical: it keys the tuning records too. Refused unless this machine runs it.
  const std::string target = opt.target.empty() ? "" : kernel_target(opt.target).name;
  Graph graph = load_model(opt.model);
  apply_activation_opt_in(graph, opt.activations);
  TensorMap inputs = gather_inputs(graph, opt.inputs);
  std::optional<tuner::TuningDatabase> db = open_tuning_database(opt.db, opt.model, target);
  std::optional<tuner::DatabaseScheduleSource> tuned;
  if (db) tuned.emplace(*db);
  Executor executor(graph, ExecutorOptions{backend, opt.threads, tuned ? &*tuned : nullptr, opt.kernel_cache, target});
  TensorMap outputs = executor.run(inputs);
  if (opt.explain) {
    for (const KernelInfo& k : executor.kernels())
      std::cout << "kernel " << k.node << ": " << k.backend << (k.detail.empty() ? "" : " (" + k.detail + ")") << "\n";
  }
  report(opt, graph, inputs, outputs, backend);
}

// --check, --output-dir and the expected outputs, or the outputs printed.
void report(const RunOptions& opt, const Graph& graph, const TensorMap& inputs, const TensorMap& outputs,
            Backend backend) {
  if (opt.check_reference && backend != Backend::Reference &&
      !check_against_reference(graph, inputs, outputs, opt.activations))
    exit_status = 1;

  if (!opt.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(opt.output_dir, ec);
    check(fs::is_directory(opt.output_dir), ErrorKind::Io, "cannot create output folder '" + opt.output_dir + "'");
    for (size_t i = 0; i < graph.outputs.size(); ++i) {
      const std::string& name = graph.outputs[i].name;
      write_tensor_pb((fs::path(opt.output_dir) / ("output_" + std::to_string(i) + ".pb")).string(), outputs.at(name), name);
    }
  }
  std::vector<std::string> expected =
      opt.inputs.test_data.empty() ? std::vector<std::string>{} : numbered_files(opt.inputs.test_data, "output_");
  if (!expected.empty()) {
    if (!compare_outputs(graph, outputs, expected)) exit_status = 1;
  } else {
    for (const ValueInfo& out : graph.outputs) {
      const Tensor& t = outputs.at(out.name);
      std::cout << "output '" << out.name << "': " << dtype_name(t.dtype()) << shape_str(t.shape());
      std::cout << " [";
      for (int64_t k = 0; k < std::min<int64_t>(t.size(), 6); ++k) std::cout << (k ? ", " : "") << t.get(k);
      std::cout << (t.size() > 6 ? ", ...]" : "]") << "\n";
    }
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run a model on inputs and write or check its outputs");
  cmd->add_option("model", opt->model, "ONNX model file")->required();
  add_input_options(cmd, opt->inputs);
  cmd->add_option("--output-dir", opt->output_dir, "write output_<i>.pb here, in graph output order");
  cmd->add_option("--backend", opt->backend, "halide (compiled kernels, the default) or reference (the plain evaluator)");
  cmd->add_flag("--check", opt->check_reference, "also run the reference evaluator and compare (exit 1 when off)");
  cmd->add_flag("--explain", opt->explain, "print which kernel ran each node, and its schedule or fallback reason");
  add_activation_flags(cmd, opt->activations);
  add_target_options(cmd, opt->kernel_cache, opt->db, opt->target, opt->fallback, "run");
  add_threads_option(cmd, opt->threads);
  cmd->callback([opt] { run(*opt); });
}

}  // namespace tetra::cli
