#include "runtime/qmatmul_runner.h"

#include "HalideBuffer.h"
#include "dsl/core/kernel_calls.h"
#include "importer/error.h"

namespace tetra {

QMatMulRunner::QMatMulRunner(std::shared_ptr<const QuantizedWeight> weight, bool trans_b, bool has_bias,
                             dsl::OutputEpilogue epilogue, bool int8_activations, KernelSource& source,
                             std::string label)
    : weight_(std::move(weight)),
      trans_b_(trans_b),
      has_bias_(has_bias),
      epilogue_(std::move(epilogue)),
      int8_activations_(int8_activations),
      source_(source),
      label_(std::move(label)) {
  Shape s = weight_->shape();
  K_ = trans_b_ ? s[1] : s[0];
  N_ = trans_b_ ? s[0] : s[1];
}

void QMatMulRunner::run(const float* a, int64_t M, float* y, const float* bias, float alpha, float beta,
                        const float* residual) {
  Compiled& c = compiled_for(M);
  Halide::Runtime::Buffer<float> A(const_cast<float*>(a), static_cast<int>(K_), static_cast<int>(M));
  Halide::Runtime::Buffer<float> Y(y, static_cast<int>(N_), static_cast<int>(M));
  Halide::Runtime::Buffer<float> B;
  if (bias) B = Halide::Runtime::Buffer<float>(const_cast<float*>(bias), static_cast<int>(N_));
  Halide::Runtime::Buffer<float> R;
  if (residual)
    R = Halide::Runtime::Buffer<float>(const_cast<float*>(residual), static_cast<int>(N_), static_cast<int>(M));
  dsl::QMatMulCall call{A.raw_buffer(),
                        c.weight.get(),
                        Y.raw_buffer(),
                        bias ? B.raw_buffer() : nullptr,
                        residual ? R.raw_buffer() : nullptr,
                        alpha,
                        beta};
  dsl::Status st = dsl::call_qmatmul(*c.code.pipeline, c.workload, c.code.layout, call);
  check(st.ok(), ErrorKind::Invalid,
        [&] { return label_ + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
}

std::string QMatMulRunner::describe() const {
  std::string out;
  for (const auto& [key, c] : compiled_) {
    std::string source = c.code.source + (c.code.from_disk_cache ? ", loaded from the kernel cache" : "");
    out += (out.empty() ? "" : "; ") + source + ": " + c.code.schedule;
  }
  return out.empty() ? "not compiled yet" : out;
}

QMatMulRunner::Compiled& QMatMulRunner::compiled_for(int64_t M) {
  // The same row count as the last call (every call of a model with fixed shapes): no key to build.
  if (last_ && last_->workload.M == M) return *last_;
  last_ = &compiled_for_new(M);
  return *last_;
}

QMatMulRunner::Compiled& QMatMulRunner::compiled_for_new(int64_t M) {
  dsl::QMatMulWorkload workload = dsl::qmatmul_workload(*weight_, trans_b_, M, has_bias_).value();
  workload.epilogue = epilogue_;
  workload.int8_activations = int8_activations_;  // a request: the source resolves it for its target
  std::string key = workload.key();
  auto it = compiled_.find(key);
  if (it != compiled_.end()) return it->second;
  KernelRequest request;
  request.kind = KernelRequest::Kind::QMatMul;
  request.node = label_;
  request.qmatmul = workload;
  KernelCode code = source_.get(request);
  compile_ms_ += code.compile_ms;
  // As compiled: the source may have fallen back to float32 activations (the vnni layout says).
  workload.format = code.spec.weight;
  workload.int8_activations = code.layout.vnni;
  std::string layout = code.layout.describe() + " " + code.spec.weight.describe();
  auto packed = packed_.find(layout);
  if (packed == packed_.end()) {
    auto p = source_.prepare_qmatmul_weight(*weight_, trans_b_, code);
    check(p.ok(), ErrorKind::Invalid, label_ + ": cannot pack weight: " + (p.ok() ? "" : p.failure().describe()));
    packed = packed_.emplace(layout, std::move(p).value()).first;
  }
  return compiled_.emplace(key, Compiled{workload, std::move(code), packed->second}).first->second;
}

}  // namespace tetra
