// tetra bench: whole-model and per-kernel latency on a backend, with the weight bandwidth and the
// arithmetic rate of each int4 kernel.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "dsl/object_cache.h"
#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/jit_kernel_source.h"
#include "runtime/model.h"
#include "runtime/tensor_io.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/gpu_run.h"
#include "tools/model_inputs.h"
#include "tuner/database_source.h"

namespace tetra::cli {
namespace {

struct BenchOptions {
  std::string model;
  std::string backend = "halide";
  int threads = 0;
  std::string db;
  std::string target;  // "": this machine
  std::string fallback;  // "cpu": run on the CPU when the GPU target's device is missing
  std::string kernel_cache = dsl::default_kernel_cache_dir();
  int repeat = 20;
  int warmup = 2;
  bool json = false;
  bool explain = false;
  ActivationOptIn activations = ActivationOptIn::Exact;
  InputOptions inputs;
};

struct Stats {
  double median = 0, min = 0, max = 0;
};

Stats stats_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// Multiply-adds x2 of an int4 node and the bytes of its weight; zero for other nodes.
std::pair<double, double> work_of(const Node& n, const Graph& bound) {
  if (!n.weight) return {0, 0};
  const QuantizedWeight& w = *n.weight;
  double weight_bytes = w.data.byte_size() + w.scale.byte_size() + (w.zero_point.empty() ? 0 : w.zero_point.byte_size());
  Shape out = to_shape(bound.values.at(n.outputs[0]).shape);
  double outputs = static_cast<double>(num_elements(out));
  double reduction = 0;
  if (n.op_type == "QMatMul") {
    reduction = static_cast<double>(w.shape()[n.attr_flag("trans_b", false) ? 1 : 0]);
  } else {  // QConv: C/group * kernel elements
    reduction = static_cast<double>(w.data.size() / w.shape()[0]);
  }
  return {2.0 * outputs * reduction, weight_bytes};
}

// The whole model on this machine's GPU (gpu_run.h): tetra-device times `repeat` runs back to back, with
// the weights and activations resident, after a first run that uploads and builds. Per-kernel times are
// not taken: the device runs the launches as one sequence.
void bench_gpu(const BenchOptions& opt) {
  check(opt.backend == "halide", ErrorKind::Invalid,
        "--target " + opt.target + " runs GPU kernels, not --backend " + opt.backend);
  Graph graph = load_model(opt.model);
  TensorMap inputs = gather_inputs(graph, opt.inputs);
  GpuRun run = run_on_gpu(opt.model, inputs, opt.target, opt.db, opt.repeat, opt.activations);
  nlohmann::json report = {
      {"model", opt.model},           {"target", run.target},     {"device", run.device},
      {"repeat", opt.repeat},         {"mean_ms", run.timed_ms},  {"median_ms", run.median_ms},
      {"first_run_ms", run.first_ms}, {"launches", run.launches}, {"kernels", nlohmann::json::array()}};
  for (const auto& [node, what] : run.kernels) report["kernels"].push_back({{"node", node}, {"detail", what}});
  if (opt.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << std::fixed << std::setprecision(3) << opt.model << " on " << run.device << " (" << run.target << "), "
            << opt.repeat << " runs: mean " << run.timed_ms << " ms a run (median of batches " << run.median_ms
            << " ms), weights and activations resident\n"
            << "first run " << run.first_ms << " ms with the program build and the uploads; " << run.launches
            << " kernel launches a run\n";
  if (opt.explain)
    for (const auto& [node, what] : run.kernels) std::cout << "kernel " << node << ": " << what << "\n";
}

void bench(const BenchOptions& given) {
  BenchOptions opt = given;
  opt.target = target_or_fallback(given.target, given.fallback);
  check(opt.repeat >= 1, ErrorKind::Invalid, "--repeat must be at least 1");
  if (!opt.target.empty() && is_gpu_target(opt.target)) return bench_gpu(opt);
  // The kernels' target, canonical: it keys the tuning records too. Refused unless this machine runs it.
  const std::string target = opt.target.empty() ? "" : kernel_target(opt.target).name;
  Graph graph = load_model(opt.model);
  apply_activation_opt_in(graph, opt.activations);
  TensorMap inputs = gather_inputs(graph, opt.inputs);
  Graph bound = bind_inputs(graph, inputs);
  std::optional<tuner::TuningDatabase> db = open_tuning_database(opt.db, opt.model, target);
  std::optional<tuner::DatabaseScheduleSource> tuned;
  if (db) tuned.emplace(*db);
  Executor executor(graph, ExecutorOptions{parse_backend(opt.backend), opt.threads, tuned ? &*tuned : nullptr, opt.kernel_cache, target});
  TensorMap outputs;
  for (int i = 0; i < std::max(1, opt.warmup); ++i) outputs = executor.run(inputs);  // compiles on first use

  std::vector<double> total, outside;  // per run: the whole run, and its time outside the node kernels
  std::vector<std::vector<double>> per_node(graph.nodes.size());
  for (int r = 0; r < opt.repeat; ++r) {
    std::vector<double> node_ms;
    auto start = std::chrono::steady_clock::now();
    executor.run(inputs, &node_ms);
    total.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    double in_kernels = 0;
    for (size_t k = 0; k < node_ms.size(); ++k) {
      per_node[k].push_back(node_ms[k]);
      in_kernels += node_ms[k];
    }
    outside.push_back(total.back() - in_kernels);
  }
  Stats whole = stats_of(total);
  double kernel_sum = 0;
  for (const std::vector<double>& v : per_node) kernel_sum += stats_of(v).median;
  // The executor's own cost per node: input checks, bookkeeping, freeing (the run's time outside the kernels).
  double overhead_us = graph.nodes.empty() ? 0 : 1000 * stats_of(outside).median / double(graph.nodes.size());
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  double peak_rss_mb = double(usage.ru_maxrss) / 1024;  // Linux reports KiB
  std::vector<KernelInfo> kernels = executor.kernels();
  // The memory plan the timed runs used: the arena, and what its intermediates take without sharing.
  Executor::MemoryStats memory = executor.memory_stats();
  double arena_mb = double(memory.arena_bytes) / (1 << 20), intermediates_mb = double(memory.value_bytes) / (1 << 20);
  int layout_conversions = 0;
  for (const KernelInfo& k : kernels) layout_conversions += k.layout_conversions;

  nlohmann::json report = {{"model", opt.model},
                           {"backend", opt.backend},
                           {"threads", opt.threads},
                           {"repeat", opt.repeat},
                           {"median_ms", whole.median},
                           {"min_ms", whole.min},
                           {"max_ms", whole.max},
                           {"kernel_sum_ms", kernel_sum},
                           {"overhead_us_per_node", overhead_us},
                           {"nodes", graph.nodes.size()},
                           {"reference_nodes", 0},
                           {"peak_rss_mb", peak_rss_mb},
                           {"arena_mb", arena_mb},
                           {"intermediates_mb", intermediates_mb},
                           {"concats_in_place", memory.concats_in_place},
                           {"layout_conversions", layout_conversions},
                           {"kernels", nlohmann::json::array()}};
  // Accuracy, when the test data holds expected outputs: the largest error against them, and the
  // largest expected magnitude it is measured against.
  std::vector<std::string> expected =
      opt.inputs.test_data.empty() ? std::vector<std::string>{} : numbered_files(opt.inputs.test_data, "output_");
  if (!expected.empty()) {
    double max_error = 0, max_expected = 0;
    for (size_t i = 0; i < expected.size() && i < graph.outputs.size(); ++i) {
      Tensor want = read_tensor_pb(expected[i]).tensor;
      const Tensor& got = outputs.at(graph.outputs[i].name);
      check(got.size() == want.size(), ErrorKind::Invalid, expected[i] + " does not have the output's shape");
      for (int64_t k = 0; k < want.size(); ++k) {
        max_error = std::max(max_error, std::fabs(got.get(k) - want.get(k)));
        max_expected = std::max(max_expected, std::fabs(want.get(k)));
      }
    }
    report["max_abs_error"] = max_error;
    report["expected_max_abs"] = max_expected;
  }
  for (size_t k = 0; k < graph.nodes.size(); ++k) {
    Stats s = stats_of(per_node[k]);
    auto [flops, bytes] = work_of(graph.nodes[k], bound);
    nlohmann::json kernel = {{"node", kernels[k].node},         {"backend", kernels[k].backend},
                             {"median_ms", s.median},           {"min_ms", s.min},
                             {"max_ms", s.max},                 {"compile_ms", kernels[k].compile_ms},
                             {"detail", kernels[k].detail}};
    if (kernels[k].layout_conversions > 0) kernel["layout_conversions"] = kernels[k].layout_conversions;
    if (flops > 0) {
      kernel["gflops"] = flops / (s.median * 1e6);
      kernel["weight_gbps"] = bytes / (s.median * 1e6);
    }
    report["kernels"].push_back(kernel);
    if (kernels[k].backend == "reference") report["reference_nodes"] = report["reference_nodes"].get<int>() + 1;
  }
  if (opt.json) {
    std::cout << report.dump(2) << "\n";
    return;
  }
  std::cout << std::fixed << std::setprecision(3) << opt.model << " on " << opt.backend << ", " << opt.repeat
            << " runs: median " << whole.median << " ms (min " << whole.min << ", max " << whole.max << ")\n"
            << "kernels " << kernel_sum << " ms in all; executor overhead " << std::setprecision(1) << overhead_us
            << " us a node over " << graph.nodes.size() << " nodes (" << report["reference_nodes"].get<int>()
            << " on reference kernels); peak RSS " << peak_rss_mb << " MB\n"
            << "memory plan: intermediates of " << intermediates_mb << " MB in an arena of " << arena_mb << " MB, "
            << memory.concats_in_place << " Concat nodes written in place by their producers; " << layout_conversions
            << " layout conversions a run, all inside kernels\n"
            << std::setprecision(3);
  if (report.contains("max_abs_error"))
    std::cout << "max abs error against the test data's outputs " << std::setprecision(6)
              << report["max_abs_error"].get<double>() << " (largest |expected| "
              << report["expected_max_abs"].get<double>() << ")\n" << std::setprecision(3);
  std::cout << std::left << std::setw(44) << "kernel" << std::setw(11) << "backend" << std::right << std::setw(10)
            << "median ms" << std::setw(10) << "GFLOP/s" << std::setw(10) << "GB/s" << std::setw(12) << "compile ms"
            << "\n";
  for (const auto& k : report["kernels"]) {
    std::cout << std::left << std::setw(44) << k["node"].get<std::string>() << std::setw(11)
              << k["backend"].get<std::string>() << std::right << std::setw(10) << k["median_ms"].get<double>();
    if (k.contains("gflops"))
      std::cout << std::setw(10) << std::setprecision(1) << k["gflops"].get<double>() << std::setw(10)
                << k["weight_gbps"].get<double>() << std::setprecision(3);
    else
      std::cout << std::setw(20) << "";
    std::cout << std::setw(12) << std::setprecision(1) << k["compile_ms"].get<double>() << std::setprecision(3);
    if (opt.explain && !k["detail"].get<std::string>().empty()) std::cout << "  " << k["detail"].get<std::string>();
    std::cout << "\n";
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Time a model: whole-model and per-kernel latency");
  cmd->add_option("model", opt->model, "ONNX model file")->required();
  cmd->add_option("--backend", opt->backend, "halide (default) or reference");
  add_target_options(cmd, opt->kernel_cache, opt->db, opt->target, opt->fallback, "time");
  add_threads_option(cmd, opt->threads);
  cmd->add_option("--repeat", opt->repeat, "timed runs after the warm-up (default 20)")->check(CLI::Range(1, 100000));
  cmd->add_option("--warmup", opt->warmup, "untimed runs first (default 2; the first compiles)");
  cmd->add_flag("--json", opt->json, "print a machine-readable summary (median_ms, per-kernel figures)");
  cmd->add_flag("--explain", opt->explain, "print each kernel's schedule or fallback reason");
  add_activation_flags(cmd, opt->activations);
  add_input_options(cmd, opt->inputs);
  opt->inputs.random_inputs = true;  // benchmarks default to random inputs
  cmd->callback([opt] { bench(*opt); });
}

}  // namespace tetra::cli
