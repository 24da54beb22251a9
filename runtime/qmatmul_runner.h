// A GEMM weight (int4, or unquantized float) bound to compiled QMatMul kernels: the node kernels of
// tetra.QMatMul, of 1-D convs (im2col) and of ConvTranspose (GEMM + col2im) run their GEMMs through it.
// The weight is prepared (by the source: packed, and where the code runs) once per layout and format
// its kernels read; a kernel is planned once per row
// count (the schedule may differ), its code from a KernelSource. No libHalide needed.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "dsl/core/qmatmul_workload.h"
#include "runtime/kernel_source.h"

namespace tetra {

class QMatMulRunner {
 public:
  // `weight` is [K, N], or [N, K] with trans_b; the kernels apply `epilogue` in their output stage.
  QMatMulRunner(std::shared_ptr<const QuantizedWeight> weight, bool trans_b, bool has_bias,
                dsl::OutputEpilogue epilogue, bool int8_activations, KernelSource& source, std::string label);
  int64_t K() const { return K_; }
  int64_t N() const { return N_; }

  // Y[M, N] = act(alpha * A[M, K] x W + beta * bias[N] [+ residual[M, N]]), row-major float32.
  void run(const float* a, int64_t M, float* y, const float* bias, float alpha, float beta,
           const float* residual = nullptr);

  std::string describe() const;  // the schedules used and where they came from
  double compile_ms() const { return compile_ms_; }

 private:
  // Per row count; kernels of the same layout and format share one packed copy of the weight.
  struct Compiled {
    dsl::QMatMulWorkload workload;  // as compiled: the code's weight format
    KernelCode code;
    std::shared_ptr<const dsl::PackedInt4Buffers> weight;  // from the source, in the code's memory
  };
  Compiled& compiled_for(int64_t M);
  Compiled& compiled_for_new(int64_t M);  // by workload key, compiled on first use

  std::shared_ptr<const QuantizedWeight> weight_;
  bool trans_b_, has_bias_;
  dsl::OutputEpilogue epilogue_;
  bool int8_activations_;
  KernelSource& source_;
  std::string label_;
  int64_t K_ = 0, N_ = 0;
  std::map<std::string, std::shared_ptr<const dsl::PackedInt4Buffers>> packed_;  // by layout and format
  std::map<std::string, Compiled> compiled_;              // by workload key (it holds M)
  Compiled* last_ = nullptr;                              // the last call's (map nodes stay put)
  double compile_ms_ = 0;
};

}  // namespace tetra
