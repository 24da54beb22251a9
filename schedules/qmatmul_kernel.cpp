#include "schedules/qmatmul_kernel.h"

#include "dsl/object_cache.h"
#include "dsl/spec_resolve.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;

std::string qmatmul_code_key(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                             const dsl::TargetSpec& target) {
  return dsl::code_key(dsl::kernel_spec(workload, target.name).key() + " " + schedule.to_string(),
                       qmatmul_halide_target(workload, target));
}

dsl::Result<ScheduledQMatMul> schedule_qmatmul(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                                               const dsl::TargetSpec& target) {
  if (dsl::Status st = check_qmatmul_schedule(workload, schedule, target); !st) return st.failure();
  const QMatMulTemplate* t = find_qmatmul_template(schedule.template_name);
  ScheduledQMatMul out;
  out.layout = t->layout(schedule);
  std::shared_ptr<dsl::QMatMulDef> q;
  if (workload.int8_activations) {
    q = std::make_shared<dsl::QMatMulDef>(dsl::define_qmatmul_int8(workload, out.layout.panel));
  } else {
    // The knobs that pick the algorithm rather than its schedule (dsl/qmatmul.h).
    dsl::BlockSums block_sums = schedule.get_int("block_sums", 0) == 0 ? dsl::BlockSums::Off
                                : schedule.get_string("zero_point", "per_weight") == "per_block"
                                    ? dsl::BlockSums::ZeroPointPerBlock
                                    : dsl::BlockSums::ZeroPointPerWeight;
    q = std::make_shared<dsl::QMatMulDef>(dsl::define_qmatmul(workload, out.layout.panel, block_sums));
  }
  try {
    if (dsl::Status st = t->apply(*q, schedule, target); !st) return st.failure();
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, schedule.to_string(), e.what()};
  }
  out.pipeline.pipeline = Halide::Pipeline(q->def.output);
  out.pipeline.params = q->params();
  return out;
}

dsl::Result<QMatMulKernel> compile_qmatmul(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                                           const dsl::TargetSpec& target, const std::string& cache_dir) {
  auto scheduled = schedule_qmatmul(workload, schedule, target);
  if (!scheduled) return scheduled.failure();
  QMatMulKernel k;
  k.workload_ = workload;
  k.schedule_ = schedule;
  k.target_ = target;
  k.layout_ = scheduled.value().layout;
  k.scheduled_ = scheduled.value().pipeline;
  auto built = dsl::build_kernel(cache_dir, qmatmul_code_key(workload, schedule, target), k.scheduled_,
                                 qmatmul_halide_target(workload, target));
  if (!built) return built.failure();
  k.code_ = built.value().code;
  k.from_disk_cache_ = built.value().from_cache;
  return k;
}

dsl::Result<dsl::PackedInt4Buffers> QMatMulKernel::pack(const QuantizedWeight& weight, bool trans_b) const {
  return dsl::pack_int4_weight(weight, trans_b, layout_, &workload_.format);
}

dsl::Status QMatMulKernel::run(const Halide::Buffer<float>& A, const dsl::PackedInt4Buffers& W,
                               Halide::Buffer<float>& Y, const QMatMulArgs& args) const {
  dsl::QMatMulCall call{A.raw_buffer(),
                        &W,
                        Y.raw_buffer(),
                        args.bias ? args.bias->raw_buffer() : nullptr,
                        args.residual ? args.residual->raw_buffer() : nullptr,
                        args.alpha,
                        args.beta};
  return dsl::call_qmatmul(*code_, workload_, layout_, call);
}

void QMatMulKernel::write_lowered_stmt(const std::string& path) const {
  Halide::Pipeline pipeline = scheduled_.pipeline;
  pipeline.compile_to_lowered_stmt(path, scheduled_.arguments(), Halide::Text, qmatmul_halide_target(workload_, target_));
}

void QMatMulKernel::write_assembly(const std::string& path) const {
  Halide::Pipeline pipeline = scheduled_.pipeline;
  pipeline.compile_to_assembly(path, scheduled_.arguments(), "qmatmul", qmatmul_halide_target(workload_, target_));
}

}  // namespace tetra::schedules
