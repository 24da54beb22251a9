#include "runtime/jit_kernel_source.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>

#include "dsl/object_cache.h"
#include "importer/error.h"
#include "runtime/elementwise_pipelines.h"
#include "schedules/cpu/attention.h"
#include "schedules/cpu/batch_matmul.h"
#include "schedules/cpu/conv.h"
#include "schedules/cpu/conv_transpose.h"
#include "schedules/qmatmul_kernel.h"
#include "schedules/qmatmul_templates.h"

namespace tetra {

namespace {

// The database's record when there is one and `check` accepts it, else the template's default; the
// source says which, and why a record was not used.
ScheduleChoice record_or_default(const ScheduleSource* schedules, const std::optional<ScheduleChoice>& tuned,
                                 const std::function<dsl::Status(const dsl::Schedule&)>& check,
                                 const std::function<dsl::Schedule()>& fallback) {
  std::string why = "default schedule (no tuning database)";
  if (schedules && tuned) {
    dsl::Status st = check(tuned->schedule);
    if (st.ok()) return *tuned;
    why = "default schedule (record rejected: " + st.failure().describe() + ")";
  } else if (schedules) {
    why = "default schedule (no database record)";
  }
  return {fallback(), why};
}

}  // namespace

ScheduleChoice choose_qmatmul_schedule(const dsl::QMatMulWorkload& workload, const ScheduleSource* schedules,
                                       const dsl::TargetSpec& target) {
  return record_or_default(
      schedules, schedules ? schedules->for_qmatmul(workload) : std::nullopt,
      [&](const dsl::Schedule& s) { return schedules::check_qmatmul_schedule(workload, s, target); },
      [&] { return schedules::default_qmatmul_schedule(workload, target).value(); });
}

ScheduleChoice choose_qconv_schedule(const dsl::QConvWorkload& workload, const ScheduleSource* schedules,
                                     const dsl::TargetSpec& target) {
  return record_or_default(
      schedules, schedules ? schedules->for_qconv(workload) : std::nullopt,
      [&](const dsl::Schedule& s) { return schedules::check_qconv_schedule(workload, s, target); },
      [&] {
        auto fallback = schedules::default_qconv_schedule(workload, target);
        check(fallback.ok(), ErrorKind::Invalid,
              "no QConv schedule for " + workload.key() + ": " + (fallback.ok() ? "" : fallback.failure().describe()));
        return fallback.value();
      });
}

KernelPlan plan_kernel(const KernelRequest& r, const ScheduleSource* schedules, const dsl::TargetSpec& target) {
  KernelPlan plan;
  plan.halide = target.halide;
  switch (r.kind) {
    case KernelRequest::Kind::QMatMul: {
      // int8 activations where the target and format allow them, else float32 and why.
      schedules::ResolvedQMatMul resolved = schedules::resolve_qmatmul(r.qmatmul, target);
      const dsl::QMatMulWorkload& workload = resolved.workload;
      const std::string& note = resolved.note;
      ScheduleChoice choice = choose_qmatmul_schedule(workload, schedules, target);
      plan.halide = schedules::qmatmul_halide_target(workload, target);
      plan.code_key = schedules::qmatmul_code_key(workload, choice.schedule, target);
      plan.info.schedule = choice.schedule.to_string();
      plan.info.source = choice.source + (note.empty() ? "" : "; " + note);
      plan.info.layout = schedules::layout_of(choice.schedule);
      plan.info.spec = dsl::kernel_spec(workload, target.name);
      plan.define = [=]() -> dsl::Result<dsl::ScheduledPipeline> {
        auto s = schedules::schedule_qmatmul(workload, choice.schedule, target);
        if (!s) return s.failure();
        return s.value().pipeline;
      };
      break;
    }
    case KernelRequest::Kind::QConv: {
      ScheduleChoice choice = choose_qconv_schedule(r.qconv, schedules, target);
      plan.code_key = schedules::qconv_code_key(r.qconv, choice.schedule, target);
      plan.info.schedule = choice.schedule.to_string();
      plan.info.source = choice.source;
      plan.info.spec = dsl::kernel_spec(r.qconv, target.name);
      plan.define = [=]() { return schedules::schedule_qconv(r.qconv, choice.schedule, target); };
      break;
    }
    case KernelRequest::Kind::BatchMatMul:
      plan.code_key = dsl::code_key(r.key(), plan.halide);  // one code for every shape
      plan.define = [=]() { return schedules::batch_matmul_pipeline(target); };
      break;
    case KernelRequest::Kind::Attention:
      plan.code_key = dsl::code_key(r.key(), plan.halide);  // one code for every shape
      plan.define = [=]() { return schedules::attention_pipeline(target); };
      break;
    case KernelRequest::Kind::ConvTransposeDirect:
      plan.code_key = dsl::code_key(r.key(), plan.halide);  // one code per kernel size and activation
      plan.define = [=]() {
        return schedules::conv_transpose_phases_pipeline(target, r.kernel_h, r.kernel_w, r.epilogue);
      };
      break;
    default:
      plan.halide = elementwise_target(target);
      plan.code_key = dsl::code_key(r.key(), plan.halide);
      plan.define = [=]() { return elementwise_pipeline(r, target); };
  }
  return plan;
}

JitKernelSource::JitKernelSource(const ScheduleSource* schedules, std::string disk_cache, dsl::TargetSpec target)
    : schedules_(schedules), disk_cache_(std::move(disk_cache)), target_(std::move(target)) {
  dsl::Status st = dsl::runs_on_host(target_);
  check(st.ok(), ErrorKind::Unsupported, st.ok() ? "" : st.failure().describe());
}

KernelCode JitKernelSource::get(const KernelRequest& request) {
  static std::mutex mutex;
  static std::map<std::string, KernelCode> cache;  // by code key: shared by every node and model
  KernelPlan plan = plan_kernel(request, schedules_, target_);
  KernelCode code = plan.info;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(plan.code_key);
  if (it != cache.end()) {
    code.pipeline = it->second.pipeline;
    code.from_disk_cache = it->second.from_disk_cache;
    return code;
  }
  auto start = std::chrono::steady_clock::now();
  auto scheduled = plan.define();
  auto failed = [&](const dsl::Failure& f) {
    fail(ErrorKind::Invalid, request.node + ": cannot compile " + (code.schedule.empty() ? request.key() : "schedule " + code.schedule) +
                                 ": " + f.describe());
  };
  if (!scheduled) failed(scheduled.failure());
  auto built = dsl::build_kernel(disk_cache_, plan.code_key, scheduled.value(), plan.halide);
  if (!built) failed(built.failure());
  code.pipeline = built.value().code;
  code.from_disk_cache = built.value().from_cache;
  code.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  cache.emplace(plan.code_key, code);
  return code;
}

int JitKernelSource::vector_lanes() const { return target_.natural_lanes(Halide::Float(32)); }

dsl::TargetSpec kernel_target(const std::string& name) {
  if (name.empty()) return dsl::host_target();
  auto target = dsl::parse_runnable_target(name);
  check(target.ok(), ErrorKind::Unsupported, target.ok() ? "" : target.failure().describe());
  return target.value();
}

void set_halide_threads(int threads) {
  if (threads > 0) setenv("HL_NUM_THREADS", std::to_string(threads).c_str(), 1);
}

Executor::Executor(const Graph& graph, const ExecutorOptions& options)
    : Executor(graph, options.backend == Backend::Halide
                          ? (set_halide_threads(options.threads),
                             std::make_shared<JitKernelSource>(options.schedules, options.kernel_cache,
                                                               kernel_target(options.target)))
                          : nullptr) {}

}  // namespace tetra
