#include "tools/gpu_run.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dsl/process.h"
#include "dsl/target.h"
#include "importer/error.h"
#include "runtime/aot/gpu_model_job.h"
#include "runtime/model.h"
#include "tools/cli_util.h"
#include "tuner/database_source.h"

namespace tetra::cli {

namespace fs = std::filesystem;

namespace {

// A folder of its own for the job, removed with it.
struct TempFolder {
  fs::path path;
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "tetra_gpu_run_XXXXXX").string();
    check(::mkdtemp(pattern.data()) != nullptr, ErrorKind::Io,
          "cannot make a folder in " + fs::temp_directory_path().string());
    path = pattern;
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// tetra-device's error lines, joined.
std::string device_error(const dsl::ProgramRun& run) {
  std::string out, line;
  for (std::istringstream lines(run.output); std::getline(lines, line);) {
    if (line.rfind("tetra-device: ", 0) == 0) line = line.substr(14);
    if (!line.empty()) out += (out.empty() ? "" : "; ") + line;
  }
  return out.empty() ? "tetra-device exited with status " + std::to_string(run.status) : out;
}

}  // namespace

bool is_gpu_target(const std::string& target) {
  if (!bare_gpu_dialect(target).empty()) return true;
  dsl::Result<dsl::TargetSpec> t = dsl::parse_target(target);
  return t.ok() && !t.value().is_cpu();
}

std::string target_or_fallback(const std::string& target, const std::string& fallback) {
  check(fallback.empty() || fallback == "cpu", ErrorKind::Invalid, "--fallback takes cpu, not '" + fallback + "'");
  if (fallback.empty() || target.empty() || !is_gpu_target(target)) return target;
  try {
    find_gpu_device(target, "to run the model");
    return target;
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Unsupported) throw;
    std::cerr << "tetra: " << e.what() << "; running on this machine's CPU instead (--fallback cpu)\n";
    return "";
  }
}

GpuRun run_on_gpu(const std::string& model, const std::map<std::string, Tensor>& inputs, const std::string& target,
                  const std::string& db, int timing_runs, ActivationOptIn activations) {
  const GpuDeviceInfo device = find_gpu_device(target, "to run the model");
  GpuRun run;
  run.device = device.name;
  run.target = device.target;
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : inputs) shapes[name] = t.shape();
  run.graph = load_model(model, shapes);
  apply_activation_opt_in(run.graph, activations);
  std::optional<tuner::TuningDatabase> records = open_tuning_database(db, model, device.target);
  std::optional<tuner::DatabaseScheduleSource> tuned;
  if (records) tuned.emplace(*records, tuner::compute_units_in(device.name));

  TempFolder folder;
  dsl::Result<GpuModelJob> job = write_gpu_model_job(run.graph, inputs, dsl::parse_target(device.target).value(),
                                                     tuned ? &*tuned : nullptr, folder.path.string(), timing_runs);
  check(job.ok(), ErrorKind::Unsupported, [&] { return "--target " + target + ": " + job.failure().message; });
  run.kernels = job.value().kernels;
  run.launches = job.value().launches;
  dsl::ProgramRun ran = dsl::run_program({device.program, "run", job.value().job_file});
  check(ran.ok(), ErrorKind::Invalid, "the model failed on " + device.name + ": " + device_error(ran));
  std::string line, last;
  for (std::istringstream lines(ran.output); std::getline(lines, line);)
    if (!line.empty()) last = line;
  nlohmann::json answer = nlohmann::json::parse(last, nullptr, false);
  check(answer.is_object() && answer.value("ms", nlohmann::json()).is_number(), ErrorKind::Invalid,
        "tetra-device gave no answer: " + last);
  run.first_ms = answer["ms"].get<double>();
  if (timing_runs > 0) {
    check(answer.contains("timing") && answer["timing"].value("ms", nlohmann::json()).is_number(), ErrorKind::Invalid,
          "tetra-device gave no timing: " + last);
    run.timed_ms = answer["timing"]["ms"].get<double>();
    run.median_ms = answer["timing"].value("median_ms", run.timed_ms);
  }
  dsl::Result<std::map<std::string, Tensor>> outputs = read_gpu_model_outputs(run.graph, folder.path.string());
  check(outputs.ok(), ErrorKind::Io, [&] { return outputs.failure().describe(); });
  run.outputs = std::move(outputs).value();
  return run;
}

}  // namespace tetra::cli
