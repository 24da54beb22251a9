#include "tuner/random_weights.h"

#include "dsl/core/int4_format.h"

namespace tetra::tuner {

namespace {

// Random codes (the whole int4 / uint4 range), scales in [1/64, 1/16] of either sign, zero points;
// or, for a float weight, values in [-1, 1].
QuantizedWeight random_weight(const Shape& shape, int float_bits, bool is_signed, bool f16_scale, bool zero_point,
                              const Shape& scale_shape, std::mt19937& rng) {
  QuantizedWeight q;
  q.name = "random weight";
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  if (float_bits != 0) {
    q.pattern = "Float";
    q.data = Tensor(float_bits == 32 ? DType::Float32 : DType::Float16, shape);
    for (int64_t i = 0; i < q.data.size(); ++i) q.data.set(i, uni(rng));
    return q;
  }
  q.pattern = "DequantizeLinear";
  DType code_type = is_signed ? DType::Int4 : DType::UInt4;
  std::uniform_int_distribution<int> code(is_signed ? -8 : 0, is_signed ? 7 : 15);
  q.data = Tensor(code_type, shape);
  for (int64_t i = 0; i < q.data.size(); ++i) q.data.set_int(i, code(rng));
  q.scale = Tensor(f16_scale ? DType::Float16 : DType::Float32, scale_shape);
  for (int64_t i = 0; i < q.scale.size(); ++i) {
    double magnitude = 1.0 / 64 + (1.0 / 16 - 1.0 / 64) * (uni(rng) + 1) / 2;
    q.scale.set(i, uni(rng) < 0 ? -magnitude : magnitude);
  }
  if (zero_point) {
    q.zero_point = Tensor(code_type, scale_shape);
    for (int64_t i = 0; i < q.zero_point.size(); ++i) q.zero_point.set_int(i, code(rng));
  }
  return q;
}

}  // namespace

dsl::Result<QuantizedWeight> random_qmatmul_weight(const dsl::QMatMulWorkload& w, std::mt19937& rng) {
  const dsl::Int4Format& f = w.format;
  Shape scale_shape;  // per tensor
  int64_t axis = 0, block = 0;
  if (f.k_group > 0 && f.per_n) {
    block = f.k_group;
    scale_shape = {(w.K + block - 1) / block, w.N};
  } else if (f.k_group == 1) {
    scale_shape = {w.K};
  } else if (f.k_group > 1) {
    return dsl::Failure{dsl::FailureKind::Unsupported, f.describe(),
                        "no ONNX weight has scales in k-groups that do not change with n"};
  } else if (f.per_n) {
    axis = 1;
    scale_shape = {w.N};
  }
  QuantizedWeight q =
      random_weight({w.K, w.N}, f.float_bits, f.is_signed, f.f16_scale, f.has_zero_point, scale_shape, rng);
  q.axis = axis;
  q.block_size = block;
  dsl::Result<dsl::Int4Format> made = dsl::int4_format_of(q, false);
  if (!made) return made.failure();
  if (dsl::Status st = dsl::check_packable(made.value(), f); !st) return st.failure();
  return q;
}

dsl::Result<QuantizedWeight> random_qconv_weight(const dsl::QConvWorkload& w, std::mt19937& rng) {
  const dsl::ConvInt4Format& f = w.format;
  const Shape shape = {w.M, w.Cg(), w.KH, w.KW};
  Shape scale_shape;  // per tensor
  if (f.grid == dsl::ConvInt4Format::Grid::PerAxis) scale_shape = {shape[f.axis]};
  if (f.grid == dsl::ConvInt4Format::Grid::Blocked) {
    scale_shape = shape;
    scale_shape[f.axis] = (shape[f.axis] + w.block - 1) / w.block;
  }
  QuantizedWeight q = random_weight(shape, f.float_bits, f.is_signed, f.f16_scale, f.has_zero_point, scale_shape, rng);
  q.axis = f.axis;
  q.block_size = f.grid == dsl::ConvInt4Format::Grid::Blocked ? w.block : 0;
  dsl::Result<dsl::ConvInt4Format> made = dsl::conv_int4_format_of(q);
  if (!made) return made.failure();
  if (!(made.value() == f))
    return dsl::Failure{dsl::FailureKind::Unsupported, f.describe(),
                        "no conv weight of shape " + shape_str(shape) + " has this format (it would be " +
                            made.value().describe() + ")"};
  return q;
}

}  // namespace tetra::tuner
