#include "qmatmul_reference.h"

#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>

namespace tetra::test {

double reference_activation(const dsl::OutputEpilogue& e, double v) {
  const std::string& a = e.activation;
  if (a.empty()) return v;
  if (a == "Relu") return v < 0 ? 0 : v;
  if (a == "LeakyRelu") return v >= 0 ? v : e.params[0] * v;
  if (a == "Clip:min,max") return std::min(std::max(v, double(e.params[0])), double(e.params[1]));
  if (a == "HardSwish") return v * std::min(std::max(v / 6 + 0.5, 0.0), 1.0);
  if (a == "HardSigmoid") return std::min(std::max(e.params[0] * v + e.params[1], 0.0), 1.0);
  if (a == "Sigmoid") return 1 / (1 + std::exp(-v));
  if (a == "Gelu:none") return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  throw std::runtime_error("no reference for the activation " + a);
}

double reference_epilogue(const dsl::OutputEpilogue& e, double y, double residual) {
  if (!e.residual) return reference_activation(e, y);
  return e.activation_first ? reference_activation(e, y) + residual : reference_activation(e, y + residual);
}

std::string WeightSpec::describe() const {
  const char* g[] = {"per-tensor", "per-n", "per-k", "blocked-k", "blocked-n"};
  std::string s = dtype_name(type) + " " + g[int(granularity)];
  if (granularity == Granularity::BlockedK || granularity == Granularity::BlockedN) s += std::to_string(block);
  if (zero_point) s += " zp";
  if (trans_b) s += " trans_b";
  if (f16_scale) s += " f16";
  return s;
}

KernelRun run_on_random_data(const schedules::QMatMulKernel& kernel, const WeightSpec& spec, int M, int K, int N,
                             uint64_t seed) {
  const dsl::QMatMulWorkload& wl = kernel.workload();
  KernelRun r;
  r.w = random_weight(K, N, spec, seed);
  dsl::Result<dsl::PackedInt4Buffers> packed = kernel.pack(r.w, spec.trans_b);
  if (!packed.ok()) {
    r.status = packed.failure();
    return r;
  }
  r.A = random_matrix(K, M, seed + 1);
  r.bias.resize(size_t(N));
  for (int n = 0; n < N; ++n) r.bias[size_t(n)] = 0.5f - float((n * 7919) % 101) / 101.0f;
  Halide::Buffer<float> bias_buf(r.bias.data(), N);
  schedules::QMatMulArgs args;
  if (wl.has_bias) {
    r.alpha = 0.75f;
    r.beta = 1.25f;
    args.bias = &bias_buf;
  }
  args.alpha = r.alpha;
  args.beta = r.beta;
  if (wl.epilogue.residual) {
    r.residual = random_matrix(N, M, seed + 2);
    args.residual = &r.residual;
  }
  r.Y = Halide::Buffer<float>(N, M);
  r.Y.fill(std::numeric_limits<float>::quiet_NaN());
  r.status = kernel.run(r.A, packed.value(), r.Y, args);
  return r;
}

QuantizedWeight random_weight(int64_t K, int64_t N, const WeightSpec& spec, uint64_t seed) {
  std::mt19937_64 rng(seed);
  bool is_signed = spec.type == DType::Int4;
  std::uniform_int_distribution<int> nibble(is_signed ? -8 : 0, is_signed ? 7 : 15);
  std::uniform_real_distribution<double> mag(0.01, 0.1);
  std::bernoulli_distribution negative(0.2);

  QuantizedWeight w;
  w.name = "w";
  w.pattern = "DequantizeLinear";
  Shape shape = spec.trans_b ? Shape{N, K} : Shape{K, N};
  w.data = Tensor(spec.type, shape);
  if (w.is_float()) {  // an unquantized weight: random values, exact in its type
    w.pattern = "Float";
    std::normal_distribution<double> normal(0.0, 0.1);
    for (int64_t i = 0; i < K * N; ++i) w.data.set(i, half_to_float(double_to_half(normal(rng))));
    return w;
  }
  for (int64_t i = 0; i < K * N; ++i) w.data.set_int(i, nibble(rng));

  // Axis of the data along k or n, as the importer would record it.
  int64_t k_axis = spec.trans_b ? 1 : 0, n_axis = 1 - k_axis;
  Shape scale_shape;
  switch (spec.granularity) {
    case Granularity::PerTensor: scale_shape = {}; break;
    case Granularity::PerN: w.axis = n_axis; scale_shape = {N}; break;
    case Granularity::PerK: w.axis = k_axis; scale_shape = {K}; break;
    case Granularity::BlockedK:
    case Granularity::BlockedN: {
      w.axis = spec.granularity == Granularity::BlockedK ? k_axis : n_axis;
      w.block_size = spec.block;
      scale_shape = shape;
      scale_shape[w.axis] = (shape[w.axis] + spec.block - 1) / spec.block;
      break;
    }
  }
  DType scale_type = spec.f16_scale ? DType::Float16 : DType::Float32;
  w.scale = Tensor(scale_type, scale_shape);
  for (int64_t i = 0; i < w.scale.size(); ++i) {
    double v = mag(rng) * (negative(rng) ? -1 : 1);
    if (spec.f16_scale) v = half_to_float(double_to_half(v));
    w.scale.set(i, v);
  }
  if (spec.zero_point) {
    w.zero_point = Tensor(spec.type, scale_shape);
    for (int64_t i = 0; i < w.zero_point.size(); ++i) w.zero_point.set_int(i, nibble(rng));
  }
  return w;
}

Halide::Buffer<float> random_matrix(int K, int M, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Halide::Buffer<float> a(K, M);
  a.for_each_value([&](float& v) { v = u(rng); });
  return a;
}

Reference reference_qmatmul(const Halide::Buffer<float>& A, const QuantizedWeight& W, bool trans_b,
                            const std::vector<float>* bias, float alpha, float beta) {
  int64_t K = A.dim(0).extent(), M = A.dim(1).extent();
  int64_t N = W.data.size() / K;
  std::vector<float> wv(size_t(K * N));  // logical [K, N]
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) wv[size_t(k * N + n)] = W.value(trans_b ? n * K + k : k * N + n);
  Reference r;
  r.y.assign(size_t(M * N), 0.0);
  r.abs_sum.assign(size_t(M * N), 0.0);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) {
        double t = double(A(int(k), int(m))) * double(wv[size_t(k * N + n)]);
        s += t;
        a += std::fabs(t);
      }
      s *= alpha;
      a *= std::fabs(alpha);
      if (bias) {
        s += double(beta) * (*bias)[size_t(n)];
        a += std::fabs(double(beta) * (*bias)[size_t(n)]);
      }
      r.y[size_t(m * N + n)] = s;
      r.abs_sum[size_t(m * N + n)] = a;
    }
  }
  return r;
}

std::vector<float> tolerances(const Reference& ref, int64_t K) {
  const double factor = 8.0 * std::sqrt(double(K) + 1) * std::ldexp(1.0, -24);
  std::vector<float> tol(ref.abs_sum.size());
  for (size_t i = 0; i < tol.size(); ++i) tol[i] = float(factor * ref.abs_sum[i] + 1e-30);
  return tol;
}

std::vector<float> f16_activation_tolerances(const Reference& ref, int64_t K, bool f16_scale) {
  std::vector<float> tol = tolerances(ref, K);
  const double unrounded = f16_scale ? std::ldexp(1.0, -11) : 0.0;
  for (size_t i = 0; i < tol.size(); ++i) tol[i] = float(32 * tol[i] + unrounded * ref.abs_sum[i]);
  return tol;
}

std::string compare(const Halide::Buffer<float>& Y, const Reference& ref, int64_t K) {
  int64_t N = Y.dim(0).extent(), M = Y.dim(1).extent();
  const std::vector<float> tol = tolerances(ref, K);
  std::ostringstream out;
  int bad = 0;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double got = Y(int(n), int(m)), want = ref.y[size_t(m * N + n)];
      double t = tol[size_t(m * N + n)];
      if (!(std::fabs(got - want) <= t)) {  // NaN (an unwritten sentinel) fails too
        if (bad < 5) out << "Y[m=" << m << ", n=" << n << "] = " << got << ", want " << want << " (tol " << t << ")\n";
        ++bad;
      }
    }
  }
  if (bad) out << bad << " of " << M * N << " outputs differ";
  return out.str();
}

}  // namespace tetra::test
