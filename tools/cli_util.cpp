#include "tools/cli_util.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "dsl/core/amd_arch.h"
#include "dsl/process.h"
#include "dsl/target.h"
#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/model.h"

namespace tetra::cli {

CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd->add_option("--threads", threads, "threads for compiled kernels (default: one per core)")
      ->check(CLI::Range(1, kMaxThreads));
}

void add_target_options(CLI::App* cmd, std::string& kernel_cache, std::string& db, std::string& target,
                        std::string& fallback, const std::string& verb) {
  cmd->add_option(
      "--kernel-cache", kernel_cache,
      "folder of compiled kernels shared across runs (default ~/.cache/tetra/kernels; '' compiles in memory)");
  cmd->add_option("--db", db, "tuning database folder (default: tuning_db/ beside the model, if any)");
  cmd->add_option("--target", target,
                  "compile the kernels for this target, which this machine must run (x86-64-avx2 on an AVX-512 "
                  "CPU), with its tuning records (default: host); opencl, cuda[:sm_NN] or hip[:ARCH] " +
                      verb + "s the whole model on this machine's GPU (hip or cuda alone: whatever its arch)");
  cmd->add_option(
      "--fallback", fallback,
      "cpu: " + verb + " on this machine's CPU when the --target GPU or its runtime is missing (it says which)");
}

std::string activation_flag(ActivationOptIn opt_in) {
  switch (opt_in) {
    case ActivationOptIn::Int8:
      return "--int8-activations";
    case ActivationOptIn::Float16:
      return "--f16-activations";
    case ActivationOptIn::Exact:
      break;
  }
  return "";
}

void add_activation_flags(CLI::App* cmd, ActivationOptIn& opt_in) {
  CLI::Option* int8 = cmd->add_flag_callback(
      activation_flag(ActivationOptIn::Int8), [&opt_in] { opt_in = ActivationOptIn::Int8; },
      "quantize the activations of every int4 MatMul to int8 per k-block (ONNX Runtime's accuracy_level 4; "
      "on a CPU with AVX512-VNNI, and on GPUs; elsewhere they stay float32): less exact");
  CLI::Option* f16 = cmd->add_flag_callback(
      activation_flag(ActivationOptIn::Float16), [&opt_in] { opt_in = ActivationOptIn::Float16; },
      "round the activations of every int4 MatMul to float16 and multiply them in float16 pairs with float32 "
      "sums (v_dot2_f32_f16; on GPUs, elsewhere they stay float32): less exact, and values past 65504 "
      "become infinite");
  int8->excludes(f16);
}

void apply_activation_opt_in(Graph& graph, ActivationOptIn opt_in) {
  if (opt_in == ActivationOptIn::Exact) return;
  int marked = mark_activation_opt_in(graph, opt_in);
  std::cerr << (opt_in == ActivationOptIn::Int8 ? "int8" : "float16") << " activations: " << marked
            << " int4 MatMul node" << (marked == 1 ? "" : "s")
            << (opt_in == ActivationOptIn::Int8 ? " quantize A to int8 per k-block\n"
                                                : " may round A to float16 where a kernel multiplies in float16\n");
}

Graph load_model_with_fixed_shapes(const std::string& model, const std::vector<std::string>& shape_bindings) {
  std::map<std::string, Shape> shapes;
  for (const std::string& s : shape_bindings) shapes.insert(parse_shape_binding(s));
  Graph graph = load_model(model, shapes);
  for (const ValueInfo& v : graph.inputs)
    check(shapes.count(v.name) || (v.has_shape && fully_known(v.shape)), ErrorKind::Invalid,
          "input " + v.name + " has a dynamic shape: bind it with --shape " + v.name + "=...");
  return graph;
}

std::pair<std::string, std::string> parse_file_binding(const std::string& text) {
  size_t eq = text.find('=');
  check(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), ErrorKind::Invalid,
        "expected NAME=VALUE, got '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::pair<std::string, Shape> parse_shape_binding(const std::string& text) {
  auto [name, dims] = parse_file_binding(text);
  Shape shape;
  std::stringstream ss(dims);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t d = -1;
    try {
      d = std::stoll(item, &used);
    } catch (const std::exception&) {
    }
    check(d >= 0 && used == item.size(), ErrorKind::Invalid, "bad dimension '" + item + "' in --shape " + text);
    shape.push_back(d);
  }
  return {name, shape};
}

std::optional<tuner::TuningDatabase> open_tuning_database(const std::string& db_dir, const std::string& model,
                                                          const std::string& target) {
  namespace fs = std::filesystem;
  std::string dir = db_dir;
  // A mistyped --db is an error, not an empty database.
  check(dir.empty() || fs::is_directory(dir), ErrorKind::Io, "--db: no tuning database folder '" + dir + "'");
  if (dir.empty()) {
    fs::path beside = fs::path(model).parent_path() / "tuning_db";
    if (!tuner::TuningDatabase::exists(beside.string())) return std::nullopt;
    dir = beside.string();
  }
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir, target.empty() ? dsl::host_target().name : target, dsl::toolchain_id());
  if (!db.note().empty()) std::cerr << "tetra: " << db.note() << "\n";
  return db;
}

std::string this_executable() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  check(n > 0, ErrorKind::Io, "cannot find the tetra executable");
  return std::string(path, n);
}

std::string bare_gpu_dialect(const std::string& target) {
  std::string lower = target;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return lower == "hip" || lower == "cuda" ? lower : "";
}

GpuDeviceInfo find_gpu_device(const std::string& target_text, const std::string& purpose, const std::string& hip_hint) {
  const std::string given = "--target " + target_text + ": ";
  std::string dialect = bare_gpu_dialect(target_text);
  std::optional<dsl::TargetSpec> target;  // none for a bare dialect: the device names it
  if (dialect.empty()) {
    dsl::Result<dsl::TargetSpec> parsed = dsl::parse_target(target_text);
    check(parsed.ok(), ErrorKind::Invalid, [&] { return given + parsed.failure().describe(); });
    target = parsed.value();
    dialect = dsl::family_name(target->family);
  }
  GpuDeviceInfo info;
  info.program = (std::filesystem::path(this_executable()).parent_path() / "tetra-device").string();
  check(std::filesystem::exists(info.program), ErrorKind::Unsupported,
        given + "no " + info.program + " " + purpose + " (build the tetra-device target)");
  const std::string estimate_hint = dialect == "hip" ? hip_hint : "";
  dsl::ProgramRun run = dsl::run_program({info.program, "info", "--dialect", dialect});
  std::string text = run.output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (text.rfind("tetra-device: ", 0) == 0) text = text.substr(14);
  check(run.ok(), ErrorKind::Unsupported, given + text + estimate_hint);
  nlohmann::json answer = nlohmann::json::parse(text, nullptr, false);
  check(answer.is_object() && answer.value("device", nlohmann::json()).is_string() &&
            answer.value("arch", nlohmann::json()).is_string(),
        ErrorKind::Unsupported, given + "tetra-device did not describe the device: " + text);
  info.name = answer["device"].get<std::string>();
  if (dialect == "opencl") {
    const std::string found = dsl::opencl_target_name(info.name);
    check(target_text == "opencl" || target->name == found, ErrorKind::Unsupported,
          given + "this machine's OpenCL device is " + found + " (" + info.name + ")");
    info.target = found;
    return info;
  }
  // The device's arch, without an AMD target ID's features: "gfx90a:sramecc+:xnack-" runs gfx90a code.
  const std::string arch = answer["arch"].get<std::string>();
  const std::string processor = arch.substr(0, arch.find(':'));
  const std::string device_kind = (dialect == "hip" ? "HIP" : "CUDA") + std::string(" device");
  if (target) {
    check(processor == target->gpu_arch, ErrorKind::Unsupported,
          given + "this machine's " + device_kind + " is " + info.name + ", not " + target->gpu_arch + estimate_hint);
    info.target = target->name;
    return info;
  }
  dsl::Result<dsl::TargetSpec> found = dsl::parse_target(dialect + ":" + processor);
  dsl::Status known = found.ok() && dialect == "hip" ? dsl::check_amd_arch(processor) : dsl::ok_status();
  check(found.ok() && known.ok(), ErrorKind::Unsupported, [&] {
    return given + "this machine's " + device_kind + " is " + info.name + ", which tetra does not build for: " +
           (found.ok() ? known.failure().describe() : found.failure().describe());
  });
  info.target = found.value().name;
  return info;
}

}  // namespace tetra::cli
