#include "runtime/aot/gpu_kernels.h"

#include <cctype>
#include <filesystem>
#include <fstream>

#include "importer/error.h"
#include "runtime/aot/staging_folder.h"
#include "schedules/gpu/build.h"
#include "schedules/gpu/conv.h"
#include "schedules/gpu/templates.h"
#include "tuner/task.h"

namespace tetra {

namespace fs = std::filesystem;

int GpuArchKernels::kernel_count() const {
  int n = 0;
  for (const GpuTaskKernels& t : tasks) n += int(t.launches.size());
  return n;
}

nlohmann::json GpuArchKernels::report_json() const {
  nlohmann::json entries = nlohmann::json::array();
  for (const GpuTaskKernels& t : tasks) {
    nlohmann::json e = {{"node", t.node}, {"workload", t.workload}, {"occurrences", t.occurrences}};
    if (!t.unsupported.empty()) {
      e["unsupported"] = t.unsupported;
      entries.push_back(e);
      continue;
    }
    e["schedule"] = t.schedule.to_json();
    e["schedule_source"] = t.schedule_source;
    for (const dsl::gpu::KernelResources& r : t.resources)
      e["kernels"].push_back({{"kernel", r.name},
                              {"resources",
                               {{"vgprs", r.vgprs},
                                {"sgprs", r.sgprs},
                                {"agprs", r.agprs},
                                {"lds_bytes", r.lds_bytes},
                                {"scratch_bytes", r.scratch_bytes},
                                {"spills", r.vgpr_spills + r.sgpr_spills},
                                {"wavefront", r.wavefront},
                                {"max_threads_per_block", r.max_threads_per_block},
                                {"waves_per_simd", r.waves_per_simd}}}});
    if (t.estimate) e["estimate"] = t.estimate->to_json();
    entries.push_back(e);
  }
  return {{"target", target.name}, {"arch", target.gpu_arch}, {"workloads", entries}};
}

nlohmann::json GpuArchKernels::launch_json() const {
  nlohmann::json workloads = nlohmann::json::object();
  for (const GpuTaskKernels& t : tasks) {
    if (!t.unsupported.empty()) continue;
    nlohmann::json plans = nlohmann::json::array();
    for (const dsl::LaunchPlan& p : t.launches) plans.push_back(p.to_json());
    workloads[t.workload] = plans;
  }
  return {{"arch", target.gpu_arch}, {"workloads", workloads}};
}

dsl::Result<GpuArchKernels> build_gpu_model_kernels(const Graph& graph, const dsl::TargetSpec& target,
                                                    const ScheduleSource* schedules, const std::string& code_object) {
  GpuArchKernels built;
  built.target = target;
  std::vector<dsl::gpu::DeviceKernel> kernels;
  std::vector<std::pair<size_t, size_t>> owner;  // kernels[i] is launch owner[i].second of task owner[i].first
  const std::vector<tuner::TuningTask> tasks = tuner::extract_tasks(graph, target);
  for (const tuner::TuningTask& task : tasks) {
    GpuTaskKernels t;
    t.node = task.node;
    t.workload = task.key();
    t.occurrences = task.occurrences;
    const std::string kernel_name = "tetra_k" + std::to_string(built.tasks.size());
    auto lower = [&](const dsl::Schedule& s) {
      return task.conv ? schedules::lower_gpu_qconv(*task.conv, s, target, kernel_name)
                       : schedules::lower_gpu_qmatmul(task.workload, s, target, kernel_name);
    };
    // The database's schedule for this arch, else (or when it fails) the template default.
    std::optional<ScheduleChoice> tuned;
    if (schedules) tuned = task.conv ? schedules->for_qconv(*task.conv) : schedules->for_qmatmul(task.workload);
    dsl::Result<schedules::GpuKernels> lowered = dsl::Failure{dsl::FailureKind::Unsupported, t.workload, ""};
    t.schedule_source = "default schedule";
    if (tuned) {
      lowered = lower(tuned->schedule);
      t.schedule_source =
          lowered ? tuned->source : "default schedule (the database's failed: " + lowered.failure().describe() + ")";
    }
    if (!tuned || !lowered) {
      dsl::Result<dsl::Schedule> fallback = task.conv ? schedules::default_qconv_schedule(*task.conv, target)
                                                      : schedules::default_qmatmul_schedule(task.workload, target);
      lowered = fallback ? lower(fallback.value()) : dsl::Result<schedules::GpuKernels>(fallback.failure());
    }
    if (!lowered) {
      t.unsupported = lowered.failure().describe();
      built.tasks.push_back(t);
      continue;
    }
    t.schedule = lowered.value().schedule;
    t.launches = lowered.value().launches;
    for (size_t k = 0; k < lowered.value().kernels.size(); ++k) {
      kernels.push_back(lowered.value().kernels[k]);
      owner.emplace_back(built.tasks.size(), k);
    }
    built.tasks.push_back(t);
  }
  if (kernels.empty()) return built;
  auto resources = schedules::build_gpu_code_object(kernels, target, code_object);
  if (!resources) return resources.failure();
  for (size_t i = 0; i < kernels.size(); ++i) built.tasks[owner[i].first].resources.push_back(resources.value()[i]);
  for (size_t i = 0; i < built.tasks.size(); ++i) {
    GpuTaskKernels& t = built.tasks[i];
    if (!t.unsupported.empty()) continue;
    dsl::KernelTraffic traffic = tasks[i].conv ? schedules::gpu_conv_traffic(*tasks[i].conv, t.schedule)
                                               : schedules::gpu_qmatmul_traffic(tasks[i].workload, t.schedule);
    dsl::Result<dsl::GpuEstimate> estimate = schedules::estimate_gpu_kernels(traffic, t.resources, target);
    if (estimate) t.estimate = estimate.value();
  }
  return built;
}

std::vector<std::string> compile_gpu_kernels(const Graph& graph, const GpuLibraryOptions& opt, std::ostream& log) {
  bool identifier = !opt.name.empty() && !std::isdigit(static_cast<unsigned char>(opt.name[0]));
  for (char c : opt.name) identifier = identifier && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  check(identifier, ErrorKind::Invalid, "the library name '" + opt.name + "' is not a C identifier");
  fs::path out(opt.out_dir);
  StagingFolder staging(out);
  const fs::path& work = staging.path();
  auto write_json = [&](const std::string& file, const nlohmann::json& j) {
    std::ofstream f(work / file);
    f << j.dump(2) << "\n";
    check(bool(f), ErrorKind::Io, "cannot write " + (work / file).string());
  };

  nlohmann::json report = {{"model", opt.model}, {"name", opt.name}, {"archs", nlohmann::json::array()}};
  dsl::Result<std::string> compiler = dsl::gpu::device_compiler_version();
  check(compiler.ok(), ErrorKind::Unsupported, compiler.ok() ? "" : compiler.failure().describe());
  report["compiler"] = compiler.value();
  std::vector<std::string> files;
  for (size_t i = 0; i < opt.targets.size(); ++i) {
    const dsl::TargetSpec& target = opt.targets[i];
    std::string code_object = opt.name + "." + target.gpu_arch + ".co";
    const ScheduleSource* tuned = i < opt.schedules.size() ? opt.schedules[i] : nullptr;
    dsl::Result<GpuArchKernels> built = build_gpu_model_kernels(graph, target, tuned, (work / code_object).string());
    check(built.ok(), ErrorKind::Unsupported, target.gpu_arch + ": " + (built.ok() ? "" : built.failure().describe()));
    const GpuArchKernels& arch = built.value();
    nlohmann::json entry = arch.report_json();
    int from_db = 0, without = 0;
    for (const GpuTaskKernels& t : arch.tasks) {
      if (!t.unsupported.empty())
        ++without;
      else if (t.schedule_source.rfind("database", 0) == 0)
        ++from_db;
    }
    if (arch.kernel_count() > 0) {
      entry["code_object"] = code_object;
      files.push_back(code_object);
      std::string launch = opt.name + "." + target.gpu_arch + ".launch.json";
      write_json(launch, arch.launch_json());
      files.push_back(launch);
    }
    report["archs"].push_back(entry);
    log << target.gpu_arch << ": " << arch.kernel_count() << " kernels for " << arch.tasks.size() - without << " of "
        << arch.tasks.size() << " workloads, " << from_db << " with schedules from the database" << std::endl;
    for (const GpuTaskKernels& t : arch.tasks)
      if (!t.unsupported.empty())
        log << "  no GPU kernels for " << t.node << " (" << t.workload << "): " << t.unsupported << "\n";
  }
  std::string manifest = opt.name + ".kernels.json";
  write_json(manifest, report);
  files.push_back(manifest);
  for (const std::string& f : files) staging.publish(f);
  return files;
}

}  // namespace tetra
