// tetra inspect: what a model contains, which int4 weights tetra recognised, and what it cannot run.
#include <unistd.h>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "dsl/core/amd_arch.h"
#include "dsl/target.h"
#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/aot/gpu_kernels.h"
#include "runtime/aot/gpu_model_job.h"
#include "runtime/executor.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tuner/database_source.h"

namespace tetra::cli {
namespace {

namespace fs = std::filesystem;

struct InspectOptions {
  std::string model;
  bool json = false;
  std::string target;               // hip:ARCH: also report the model's GPU kernels for that arch
  std::vector<std::string> shapes;  // NAME=dims for dynamic inputs (with --target)
  std::string db;                   // the tuning database for --target's kernels; empty: tuning_db/ beside the model
};

// The model's GPU kernels for `target` (hip:ARCH), as `tetra compile --target` builds them
// (runtime/aot/gpu_kernels.h), with the records of --db or of the database beside the model, if any.
nlohmann::json gpu_kernels(const InspectOptions& opt, const dsl::TargetSpec& target) {
  Graph graph = load_model_with_fixed_shapes(opt.model, opt.shapes);
  std::optional<tuner::TuningDatabase> db = open_tuning_database(opt.db, opt.model, target.name);
  std::optional<tuner::DatabaseScheduleSource> tuned;
  if (db) tuned.emplace(*db);
  fs::path dir = fs::temp_directory_path() / ("tetra_inspect_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  dsl::Result<GpuArchKernels> built =
      build_gpu_model_kernels(graph, target, tuned ? &*tuned : nullptr, (dir / "kernels.co").string());
  std::error_code ec;
  fs::remove_all(dir, ec);
  check(built.ok(), ErrorKind::Unsupported, target.gpu_arch + ": " + (built.ok() ? "" : built.failure().describe()));
  nlohmann::json report = built.value().report_json();
  // Whether the whole model stays on the device, as `tetra run --target` would run it: every node's
  // kernels in one program, or the first node that has none.
  std::map<std::string, Tensor> inputs;
  for (const ValueInfo& in : graph.inputs) {
    const ValueInfo* bound = graph.find_value(in.name);  // the input with --shape's dims
    inputs[in.name] = Tensor(in.dtype, to_shape((bound ? *bound : in).shape));
  }
  dsl::Result<GpuModelJob> job = write_gpu_model_job(graph, inputs, target, tuned ? &*tuned : nullptr, dir.string());
  fs::remove_all(dir, ec);
  report["whole_model"] = job.ok() ? nlohmann::json{{"on_device", true},
                                                    {"launches", job.value().launches},
                                                    {"weight_bytes", job.value().weight_bytes}}
                                   : nlohmann::json{{"on_device", false}, {"why", job.failure().message}};
  return report;
}

std::string value_line(const ValueInfo& v) {
  return v.name + ": " + dtype_name(v.dtype) + (v.has_shape ? shape_str(v.shape) : std::string("[rank unknown]"));
}

nlohmann::json weight_json(const Node& n) {
  const QuantizedWeight& w = *n.weight;
  int64_t float_bytes = w.data.size() * dtype_bits(w.value_dtype()) / 8;
  int64_t params = w.scale.byte_size() + (w.zero_point.empty() ? 0 : w.zero_point.byte_size());
  return {{"node", n.name},
          {"consumer", n.attr_string("source_op", n.op_type)},
          {"tensor", w.name},
          {"pattern", w.pattern},
          {"dtype", dtype_name(w.data.dtype())},
          {"shape", w.shape()},
          {"granularity", w.granularity()},
          {"block_size", w.block_size},
          {"zero_points", !w.zero_point.empty()},
          {"packed_bytes", w.data.byte_size()},
          {"param_bytes", params},
          {"value_dtype", dtype_name(w.value_dtype())},
          {"float_bytes", float_bytes}};
}

void inspect(const InspectOptions& opt) {
  Graph original = load_onnx(opt.model, LoadOptions{false});
  Graph graph = load_onnx(opt.model);
  std::vector<std::string> unsupported = unsupported_nodes(graph);
  if (unsupported.empty()) graph = load_model(opt.model);  // as tetra run sees it: shapes, fused epilogues

  std::map<std::string, int> histogram;
  for (const Node& n : original.nodes) histogram[n.domain.empty() ? n.op_type : n.domain + "." + n.op_type]++;
  nlohmann::json report;
  report["model"] = opt.model;
  report["ir_version"] = graph.ir_version;
  for (const auto& [domain, version] : graph.opsets) report["opsets"][domain.empty() ? "ai.onnx" : domain] = version;
  for (const ValueInfo& v : graph.inputs) report["inputs"].push_back(value_line(v));
  for (const ValueInfo& v : graph.outputs) report["outputs"].push_back(value_line(v));
  report["ops"] = histogram;
  report["int4_weights"] = nlohmann::json::array();
  for (const Node* n : graph.quantized_nodes()) report["int4_weights"].push_back(weight_json(*n));
  report["unsupported"] = unsupported;
  if (!opt.target.empty()) {
    dsl::Result<dsl::TargetSpec> target = dsl::parse_target(opt.target);
    check(target.ok(), ErrorKind::Invalid, target.ok() ? "" : target.failure().describe());
    check(target.value().family == dsl::TargetFamily::Hip, ErrorKind::Unsupported,
          "inspect --target reports GPU kernels: give hip:ARCH (such as hip:gfx942), not " + opt.target);
    dsl::Status known = dsl::check_amd_arch(target.value().gpu_arch);
    check(known.ok(), ErrorKind::Unsupported, "--target: " + (known.ok() ? "" : known.failure().describe()));
    check(unsupported.empty(), ErrorKind::Unsupported,
          "the model has unsupported ops; see tetra inspect without --target");
    report["gpu"] = gpu_kernels(opt, target.value());
  }
  // Which nodes the Halide backend compiles, and why the others fall back to the reference kernels.
  if (unsupported.empty()) {
    ExecutorOptions options;  // the Halide backend
    Executor executor(graph, options);
    int compiled = 0;
    std::map<std::string, int> fallbacks;
    std::vector<KernelInfo> kernels = executor.kernels();
    for (size_t k = 0; k < kernels.size(); ++k) {
      if (kernels[k].backend == "halide") {
        ++compiled;
        continue;
      }
      const Node& n = graph.nodes[k];
      fallbacks[(n.domain.empty() ? n.op_type : n.domain + "." + n.op_type) + ": " + kernels[k].detail]++;
    }
    report["halide_backend"] = {{"compiled", compiled}, {"reference_fallbacks", fallbacks}};
  }

  if (opt.json) {
    std::cout << report.dump(2) << "\n";
  } else {
    std::cout << "model: " << opt.model << "  (IR " << graph.ir_version << ")\nopsets:";
    for (const auto& [domain, version] : report["opsets"].items()) std::cout << " " << domain << "=" << version;
    std::cout << "\ninputs:\n";
    for (const ValueInfo& v : graph.inputs) std::cout << "  " << value_line(v) << "\n";
    std::cout << "outputs:\n";
    for (const ValueInfo& v : graph.outputs) std::cout << "  " << value_line(v) << "\n";
    std::cout << "ops (" << original.nodes.size() << " nodes):\n";
    for (const auto& [op, count] : histogram) std::cout << "  " << std::setw(5) << count << "  " << op << "\n";
    std::cout << "int4 weights (" << report["int4_weights"].size() << ", kept packed):\n";
    int64_t packed_total = 0, float_total = 0;
    for (const auto& w : report["int4_weights"]) {
      std::cout << "  " << w["node"].get<std::string>() << " (" << w["consumer"].get<std::string>() << "): "
                << w["tensor"].get<std::string>() << " " << w["dtype"].get<std::string>()
                << shape_str(w["shape"].get<Shape>()) << ", " << w["pattern"].get<std::string>() << ", "
                << w["granularity"].get<std::string>() << (w["zero_points"].get<bool>() ? ", zero points" : ", symmetric")
                << ", " << w["packed_bytes"].get<int64_t>() << " bytes packed + " << w["param_bytes"].get<int64_t>()
                << " bytes of scales/zero points vs " << w["float_bytes"].get<int64_t>() << " as "
                << w["value_dtype"].get<std::string>() << "\n";
      packed_total += w["packed_bytes"].get<int64_t>() + w["param_bytes"].get<int64_t>();
      float_total += w["float_bytes"].get<int64_t>();
    }
    if (float_total)
      std::cout << "  total: " << packed_total << " bytes in all vs " << float_total << " unquantized ("
                << std::setprecision(3) << double(float_total) / packed_total << "x smaller)\n";
    if (report.contains("halide_backend")) {
      const auto& hb = report["halide_backend"];
      std::cout << "halide backend: " << hb["compiled"].get<int>() << " of " << graph.nodes.size()
                << " nodes compiled; reference fallbacks:" << (hb["reference_fallbacks"].empty() ? " none" : "") << "\n";
      for (const auto& [what, count] : hb["reference_fallbacks"].items())
        std::cout << "  " << std::setw(5) << count.get<int>() << "  " << what << "\n";
    }
    std::cout << "unsupported ops: " << (unsupported.empty() ? "none" : "") << "\n";
    for (const std::string& u : unsupported) std::cout << "  " << u << "\n";
    if (report.contains("gpu")) {
      const nlohmann::json& whole = report["gpu"]["whole_model"];
      std::cout << "whole model on " << report["gpu"]["target"].get<std::string>() << ": "
                << (whole["on_device"].get<bool>()
                        ? "every node on the device, " + std::to_string(whole["launches"].get<int>()) +
                              " launches a run, " + std::to_string(whole["weight_bytes"].get<int64_t>()) +
                              " bytes of weights uploaded once"
                        : "no: " + whole["why"].get<std::string>())
                << "\n";
      std::cout << "GPU kernels for " << report["gpu"]["target"].get<std::string>()
                << " (registers, LDS, scratch and spills from the code object; waves per SIMD from them):\n";
      for (const auto& w : report["gpu"]["workloads"]) {
        std::cout << "  " << w["node"].get<std::string>() << "  " << w["workload"].get<std::string>() << "\n";
        if (w.contains("unsupported")) {
          std::cout << "    no GPU kernels: " << w["unsupported"].get<std::string>() << "\n";
          continue;
        }
        std::cout << "    " << w["schedule"].dump() << " (" << w["schedule_source"].get<std::string>() << ")\n";
        for (const auto& k : w["kernels"]) {
          const auto& r = k["resources"];
          std::cout << "    " << k["kernel"].get<std::string>() << ": " << r["vgprs"].get<int>() << " VGPRs, "
                    << r["sgprs"].get<int>() << " SGPRs, " << r["agprs"].get<int>() << " AGPRs, "
                    << r["lds_bytes"].get<int>() << " B LDS, " << r["scratch_bytes"].get<int>() << " B scratch, "
                    << r["spills"].get<int>() << " spills, wave " << r["wavefront"].get<int>() << ", "
                    << r["waves_per_simd"].get<int>() << " waves per SIMD\n";
        }
        if (w.contains("estimate")) {
          const auto& e = w["estimate"];
          std::cout << std::setprecision(3) << "    estimate on " << e["device"].get<std::string>() << ": "
                    << e["time_us"].get<double>() << " us, " << e["bound"].get<std::string>() << "-bound (memory "
                    << e["memory_us"].get<double>() << " us, L2 " << e["cache_us"].get<double>() << " us, ALU "
                    << e["valu_us"].get<double>() << " us, LDS " << e["lds_us"].get<double>() << " us, loads "
                    << e["loads_us"].get<double>() << " us)\n";
        }
      }
    }
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Describe a model: opsets, inputs, ops, int4 weights, unsupported ops");
  cmd->add_option("model", opt->model, "ONNX model file")->required();
  cmd->add_flag("--json", opt->json, "print a machine-readable report");
  cmd->add_option("--target", opt->target,
                  "also build the model's GPU kernels for this AMD GPU (hip:gfx942, ...) and report their "
                  "registers, LDS, scratch and spills");
  cmd->add_option("--shape", opt->shapes, "NAME=d0,d1,... for a dynamic input (with --target)");
  cmd->add_option("--db", opt->db,
                  "tuning database folder whose records the --target kernels use (default: tuning_db/ beside the "
                  "model, if any)");
  cmd->callback([opt] { inspect(*opt); });
}

}  // namespace tetra::cli
