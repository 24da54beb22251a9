#include "schedules/qmatmul_kernel.h"

#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;

dsl::Result<QMatMulKernel> compile_qmatmul(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                                           const dsl::TargetSpec& target, const std::string& cache_dir) {
  if (dsl::Status st = check_qmatmul_schedule(workload, schedule, target); !st) return st.failure();
  const QMatMulTemplate* t = find_qmatmul_template(schedule.template_name);

  QMatMulKernel k;
  k.workload_ = workload;
  k.schedule_ = schedule;
  k.target_ = target;
  k.layout_ = t->layout(schedule);
  k.def_ = std::make_shared<dsl::QMatMulDef>(dsl::define_qmatmul(workload, k.layout_.panel));
  try {
    if (dsl::Status st = t->apply(*k.def_, schedule, target); !st) return st.failure();
    k.pipeline_ = Halide::Pipeline(k.def_->def.output);
    if (cache_dir.empty()) k.pipeline_.compile_jit(target.halide);
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, schedule.to_string(), e.what()};
  }
  if (!cache_dir.empty()) {
    // The generated code depends on the format, the epilogue, the schedule and the target only.
    std::string code = "qmatmul " + workload.format.describe() + (workload.has_bias ? " bias " : " ") +
                       dsl::activation_name(workload.activation) + " " + schedule.to_string();
    auto object = dsl::load_or_compile_object(cache_dir, code, k.pipeline_, k.def_->def.arguments, target.halide);
    if (!object.ok()) return object.failure();
    k.object_ = object.value();
  }
  return k;
}

dsl::Result<dsl::PackedInt4Buffers> QMatMulKernel::pack(const QuantizedWeight& weight, bool trans_b) const {
  return dsl::pack_int4_weight(weight, trans_b, layout_, &workload_.format);
}

dsl::Status QMatMulKernel::run(const Halide::Buffer<float>& A, const dsl::PackedInt4Buffers& W,
                               Halide::Buffer<float>& Y, const QMatMulArgs& args) const {
  auto bad = [](const std::string& why) { return Failure{FailureKind::Run, "qmatmul", why}; };
  if (A.dimensions() != 2 || Y.dimensions() != 2) return bad("A and Y must be 2-D buffers (K, M) and (N, M)");
  if (A.dim(0).extent() != W.K)
    return bad("A has K = " + std::to_string(A.dim(0).extent()) + ", the weight " + std::to_string(W.K));
  if (Y.dim(0).extent() != W.N || Y.dim(1).extent() != A.dim(1).extent())
    return bad("Y must be (N = " + std::to_string(W.N) + ", M = " + std::to_string(A.dim(1).extent()) + ")");
  if (W.layout.k_align % layout_.k_align != 0)
    return bad("the weight's rows are padded to a multiple of " + std::to_string(W.layout.k_align) +
               ", this kernel reads blocks of " + std::to_string(layout_.k_align) + " (repack it for this kernel)");
  if (workload_.has_bias && (!args.bias || args.bias->dimensions() != 1 || args.bias->dim(0).extent() != W.N))
    return bad("this kernel needs a bias of N = " + std::to_string(W.N) + " values");

  const dsl::QMatMulDef& q = *def_;
  if (object_) {
    // The ahead-of-time entry point takes the arguments in define_qmatmul's order, then Y.
    std::vector<void*> argv = {const_cast<halide_buffer_t*>(A.raw_buffer()),
                               const_cast<halide_buffer_t*>(W.packed.raw_buffer()),
                               const_cast<halide_buffer_t*>(W.scale.raw_buffer())};
    if (workload_.format.has_zero_point) argv.push_back(const_cast<halide_buffer_t*>(W.zero.raw_buffer()));
    if (workload_.has_bias) argv.push_back(const_cast<halide_buffer_t*>(args.bias->raw_buffer()));
    float alpha = args.alpha, beta = args.beta;
    argv.push_back(&alpha);
    argv.push_back(&beta);
    argv.push_back(Y.raw_buffer());
    if (argv.size() != def_->def.arguments.size() + 1) return bad("argument count does not match the pipeline");
    int rc = object_->call(argv.data());
    if (rc != 0) return bad("the kernel returned Halide error " + std::to_string(rc));
    return dsl::ok_status();
  }
  Halide::ParamMap params;
  params.set(q.A, A);
  if (dsl::Status st = q.W.bind(params, W); !st) return st;
  if (workload_.has_bias) params.set(q.bias, *args.bias);
  params.set(q.alpha, args.alpha);
  params.set(q.beta, args.beta);
  try {
    Halide::Pipeline pipeline = pipeline_;  // a handle: realize() is not const
    pipeline.realize(Y, target_.halide, params);
  } catch (const Halide::Error& e) {
    return bad(e.what());
  }
  return dsl::ok_status();
}

void QMatMulKernel::write_lowered_stmt(const std::string& path) const {
  Halide::Pipeline pipeline = pipeline_;
  pipeline.compile_to_lowered_stmt(path, def_->def.arguments, Halide::Text, target_.halide);
}

void QMatMulKernel::write_assembly(const std::string& path) const {
  Halide::Pipeline pipeline = pipeline_;
  pipeline.compile_to_assembly(path, def_->def.arguments, "qmatmul", target_.halide);
}

}  // namespace tetra::schedules
