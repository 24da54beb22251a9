#include "dsl/core/qconv_format.h"

#include <cstdio>
#include <cstring>
#include <vector>

namespace tetra::dsl {

std::string ConvInt4Format::describe() const {
  if (is_float()) return "f" + std::to_string(float_bits) + " weight";
  std::string s = is_signed ? "int4" : "uint4";
  if (grid == Grid::PerTensor) s += " per-tensor";
  else s += (grid == Grid::PerAxis ? " per-axis(" : " blocked(") + std::to_string(axis) + ")";
  if (has_zero_point) s += " zp";
  s += f16_scale ? " f16" : " f32";
  return s;
}

Result<ConvInt4Format> conv_int4_format_of(const QuantizedWeight& w) {
  auto no = [&](const std::string& why) { return Failure{FailureKind::Unsupported, w.name, why}; };
  if (w.data.rank() != 4) return no("only 2-D convs (a 4-D weight) have a direct kernel, not " + shape_str(w.shape()));
  if (w.data.size() >= (int64_t(1) << 31)) return no("the weight has 2^31 elements or more");
  if (w.is_float()) {
    ConvInt4Format f;
    f.float_bits = w.data.dtype() == DType::Float32 ? 32 : 16;
    return f;
  }
  if (w.data.dtype() != DType::Int4 && w.data.dtype() != DType::UInt4)
    return no("the weight is " + dtype_name(w.data.dtype()) + ", not int4 or uint4");
  if (w.scale.dtype() != DType::Float32 && w.scale.dtype() != DType::Float16)
    return no("scales must be float32 or float16, not " + dtype_name(w.scale.dtype()));
  if (!w.zero_point.empty() && w.zero_point.dtype() != w.data.dtype())
    return no("the zero point's type must match the data's");
  if (!w.zero_point.empty() && w.zero_point.size() != w.scale.size())
    return no("the zero point's shape must match the scale's");

  ConvInt4Format f;
  f.is_signed = w.data.dtype() == DType::Int4;
  f.has_zero_point = !w.zero_point.empty();
  f.f16_scale = w.scale.dtype() == DType::Float16;
  if (w.per_tensor()) return f;
  if (w.axis < 0 || w.axis > 3) return no("quantization axis " + std::to_string(w.axis) + " out of range");
  f.axis = int(w.axis);
  const Shape& s = w.shape();
  if (w.block_size == 0) {
    if (w.scale.size() != s[w.axis]) return no("a per-axis scale must have one value per index of the axis");
    f.grid = ConvInt4Format::Grid::PerAxis;
    return f;
  }
  Shape grid = s;
  grid[w.axis] = (s[w.axis] + w.block_size - 1) / w.block_size;
  if (w.scale.shape() != grid) return no("a blocked scale must have shape " + shape_str(grid));
  f.grid = ConvInt4Format::Grid::Blocked;
  return f;
}

std::string QConvWorkload::key() const {
  auto x = [](int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); };
  std::string s = "qconv n" + std::to_string(N) + " c" + std::to_string(C) + " h" + std::to_string(H) + " w" +
                  std::to_string(W) + " m" + std::to_string(M) + " g" + std::to_string(group) + " k" + x(KH, KW) +
                  " s" + x(SH, SW) + " d" + x(DH, DW) + " p" + std::to_string(pad_top) + "," +
                  std::to_string(pad_left) + "," + std::to_string(pad_bottom) + "," + std::to_string(pad_right) +
                  " " + format.describe();
  if (format.grid == ConvInt4Format::Grid::Blocked) s += " b" + std::to_string(block);
  return s + (has_bias ? " bias" : "");
}

int64_t ConvInt4Buffers::bytes() const {
  return buffer_bytes(packed) + buffer_bytes(scale) + buffer_bytes(zero);
}

Result<ConvInt4Buffers> pack_conv_weight(const QuantizedWeight& w) {
  Result<ConvInt4Format> format = conv_int4_format_of(w);
  if (!format) return format.failure();
  const ConvInt4Format& f = format.value();
  const Shape& s = w.shape();
  ConvInt4Buffers out;
  out.format = f;
  out.M = s[0];
  out.Cg = s[1];
  out.KH = s[2];
  out.KW = s[3];
  out.block = f.grid == ConvInt4Format::Grid::Blocked ? w.block_size : 0;

  if (f.is_float()) {
    out.packed = Halide::Runtime::Buffer<>(halide_type_t(halide_type_float, uint8_t(f.float_bits)), int(w.data.size()));
    std::memcpy(out.packed.data(), w.data.bytes(), out.packed.size_in_bytes());
    return out;
  }
  int64_t bytes = (w.data.size() + 1) / 2;
  out.packed = Halide::Runtime::Buffer<uint8_t>(int(bytes));
  std::memcpy(out.packed.data(), w.data.bytes(), size_t(bytes));

  // The grid in ONNX order [M', Cg', KH', KW'] is Halide's (KW', KH', Cg', M'), dense.
  Shape grid = {1, 1, 1, 1};
  if (f.grid == ConvInt4Format::Grid::PerAxis) grid[f.axis] = s[f.axis];
  if (f.grid == ConvInt4Format::Grid::Blocked) grid = w.scale.shape();
  std::vector<int> extents = {int(grid[3]), int(grid[2]), int(grid[1]), int(grid[0])};
  out.scale = Halide::Runtime::Buffer<>(
      f.f16_scale ? halide_type_t(halide_type_float, 16) : halide_type_t(halide_type_float, 32), extents);
  std::memcpy(out.scale.data(), w.scale.bytes(), out.scale.size_in_bytes());
  if (f.has_zero_point) {
    out.zero = Halide::Runtime::Buffer<int8_t>(extents);
    for (int64_t i = 0; i < w.zero_point.size(); ++i) out.zero.data()[i] = int8_t(w.zero_point.get_int(i));
  }
  return out;
}

}  // namespace tetra::dsl
