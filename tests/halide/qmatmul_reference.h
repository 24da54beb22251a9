// Test support: random int4 weights in every quantization form, and the plain-loop reference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "Halide.h"
#include "importer/graph.h"
#include "schedules/qmatmul_kernel.h"

namespace tetra::test {

enum class Granularity { PerTensor, PerN, PerK, BlockedK, BlockedN };

struct WeightSpec {
  DType type = DType::Int4;
  bool zero_point = false;
  Granularity granularity = Granularity::BlockedK;
  int64_t block = 32;
  bool trans_b = false;  // data stored [N, K] (MatMulNBits' form) instead of [K, N]
  bool f16_scale = false;
  std::string describe() const;
};

// Fresh random weight of logical shape [K, N]: every nibble value occurs, scales are nonzero and
// zero points random; a float32/float16 `type` gives an unquantized weight of random values (the
// quantization fields are then unused). The same seed gives the same weight.
QuantizedWeight random_weight(int64_t K, int64_t N, const WeightSpec& spec, uint64_t seed);

// A(k, m) uniform in [-1, 1), never all zero.
Halide::Buffer<float> random_matrix(int K, int M, uint64_t seed);

// The epilogue's activation in double, the reference for the kernels' output stage (throws for an
// activation it does not know).
double reference_activation(const dsl::OutputEpilogue& epilogue, double v);
// The whole epilogue: activation(y + residual), or activation(y) + residual with activation_first
// (`residual` is ignored where the epilogue has none).
double reference_epilogue(const dsl::OutputEpilogue& epilogue, double y, double residual);

struct Reference {
  std::vector<double> y;        // [M * N], row-major
  std::vector<double> abs_sum;  // sum_k |A W| per output: the scale of fp32 rounding error
};

// Y = alpha * A x W + beta * bias with double accumulation over QuantizedWeight::value().
Reference reference_qmatmul(const Halide::Buffer<float>& A, const QuantizedWeight& W, bool trans_b,
                            const std::vector<float>* bias = nullptr, float alpha = 1.0f, float beta = 1.0f);

// One run of a compiled kernel on a fresh weight of `spec` (seed) and a fresh A (seed + 1) of shape M x K;
// with a bias in the workload, a fixed bias, alpha 0.75 and beta 1.25. Y starts as NaN, so an unwritten
// output fails any comparison. `status` says why the weight did not pack or the kernel did not run.
struct KernelRun {
  QuantizedWeight w;
  Halide::Buffer<float> A, Y;
  Halide::Buffer<float> residual;  // (N, M), random, when the workload's epilogue adds one
  std::vector<float> bias;
  float alpha = 1.0f, beta = 1.0f;
  dsl::Status status = dsl::ok_status();
};
KernelRun run_on_random_data(const schedules::QMatMulKernel& kernel, const WeightSpec& spec, int M, int K, int N,
                             uint64_t seed);

// How far a kernel's fp32 result may be from each reference output: 8 * sqrt(K) * 2^-24 * abs_sum
// (fp32 accumulation in any order).
std::vector<float> tolerances(const Reference& ref, int64_t K);
// The same for the float16-activation GEMV (gpu_int4_gemv_h2) on A of float16 values: it sums (16 + u) a
// and subtracts (16 + offset) times the block's sum of a, in float32, so up to 32 times the above (u -
// offset is 4 on average); and with float16 scales it scales a block's sum where the reference rounds each
// dequantized weight to float16 first, 2^-11 of abs_sum more.
std::vector<float> f16_activation_tolerances(const Reference& ref, int64_t K, bool f16_scale);

// Compares Y (N, M) with the reference within `tolerances`; returns "" or the first mismatches.
std::string compare(const Halide::Buffer<float>& Y, const Reference& ref, int64_t K);

}  // namespace tetra::test
