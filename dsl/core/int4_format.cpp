#include "dsl/core/int4_format.h"

#include <algorithm>
#include <cstring>

namespace tetra::dsl {

std::string Int4Format::describe() const {
  if (is_float()) return "f" + std::to_string(float_bits) + " weight";
  std::string s = is_signed ? "int4" : "uint4";
  if (k_group > 0 && per_n) s += " blocked(k," + std::to_string(k_group) + ")";
  else if (k_group > 0) s += k_group == 1 ? " per-k" : " k-groups(" + std::to_string(k_group) + ")";
  else s += per_n ? " per-n" : " per-tensor";
  if (has_zero_point) s += " zp";
  s += f16_scale ? " f16" : " f32";
  return s;
}

std::string Int4Layout::describe() const {
  return std::to_string(panel) + "/" + std::to_string(k_align) + (vnni ? " vnni" : "") + (words ? " words" : "") +
         (panel_pad_bytes ? " pad " + std::to_string(panel_pad_bytes) : "") +
         (panel_multiple > 1 ? " tiles of " + std::to_string(panel_multiple) : "");
}

int64_t packed_panels(const Int4Layout& layout, int64_t N) {
  const int64_t panels = (N + layout.panel - 1) / layout.panel, tile = std::max(layout.panel_multiple, 1);
  return (panels + tile - 1) / tile * tile;
}

int64_t dense_panel_bytes(const Int4Layout& layout, const Int4Format& format, int64_t K) {
  const int64_t Ka = (K + layout.k_align - 1) / layout.k_align * layout.k_align;
  // A float weight holds an element a k; every int4 packing two k a byte.
  return format.is_float() ? layout.panel * Ka * format.float_bits / 8 : layout.panel * Ka / 2;
}

namespace {

Failure unsupported(const QuantizedWeight& w, const std::string& why) {
  return Failure{FailureKind::Unsupported, w.name, why};
}

// Where the element (k, n) of the logical [K, N] weight sits in the QuantizedWeight's data.
int64_t flat_index(int64_t k, int64_t n, int64_t K, int64_t N, bool trans_b) {
  return trans_b ? n * K + k : k * N + n;
}

// Calls put(k, n) for every element of the logical [K, N] weight, in the source's own order: the
// weights can be hundreds of MiB.
template <class Put>
void for_each_element(int64_t K, int64_t N, bool trans_b, const Put& put) {
  if (trans_b) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) put(k, n);
  } else {
    for (int64_t k = 0; k < K; ++k)
      for (int64_t n = 0; n < N; ++n) put(k, n);
  }
}

}  // namespace

Result<Int4Format> int4_format_of(const QuantizedWeight& w, bool trans_b) {
  if (w.is_float()) {
    if (w.data.rank() != 2) return unsupported(w, "a QMatMul weight must be 2-D, not " + shape_str(w.shape()));
    Int4Format f;
    f.float_bits = w.data.dtype() == DType::Float32 ? 32 : 16;
    return f;
  }
  if (w.data.dtype() != DType::Int4 && w.data.dtype() != DType::UInt4)
    return unsupported(w, "the weight is " + dtype_name(w.data.dtype()) + ", not int4 or uint4");
  if (w.data.rank() != 2) return unsupported(w, "a QMatMul weight must be 2-D, not " + shape_str(w.shape()));
  if (w.scale.dtype() != DType::Float32 && w.scale.dtype() != DType::Float16)
    return unsupported(w, "scales must be float32 or float16, not " + dtype_name(w.scale.dtype()));
  if (!w.zero_point.empty() && w.zero_point.dtype() != w.data.dtype())
    return unsupported(w, "the zero point's type must match the data's");
  if (!w.zero_point.empty() && w.zero_point.size() != w.scale.size())
    return unsupported(w, "the zero point's shape must match the scale's");

  Int4Format f;
  f.is_signed = w.data.dtype() == DType::Int4;
  f.has_zero_point = !w.zero_point.empty();
  f.f16_scale = w.scale.dtype() == DType::Float16;
  if (w.per_tensor()) return f;
  if (w.axis < 0 || w.axis > 1) return unsupported(w, "quantization axis out of range");
  bool along_k = (w.axis == 0) != trans_b;
  int64_t dim = w.shape()[w.axis];
  if (w.block_size == 0) {
    if (w.scale.size() != dim) return unsupported(w, "per-axis scale must have one value per index of the axis");
    if (along_k) f.k_group = 1;
    else f.per_n = true;
    return f;
  }
  int64_t blocks = (dim + w.block_size - 1) / w.block_size;
  int64_t other = w.shape()[1 - w.axis];
  if (w.scale.size() != blocks * other) return unsupported(w, "blocked scale has the wrong number of values");
  f.per_n = true;
  f.k_group = along_k ? w.block_size : 1;  // blocks along n: one scale per (k, n)
  return f;
}

int64_t PackedInt4Buffers::bytes() const {
  return buffer_bytes(packed) + buffer_bytes(scale) + buffer_bytes(zero);
}

Int4Format int8_kernel_format(Int4Format weight) {
  weight.f16_scale = false;
  return weight;
}

Status check_packable(const Int4Format& weight, const Int4Format& kernel) {
  auto no = [&](const std::string& why) {
    return Failure{FailureKind::Unsupported, weight.describe(), "cannot be packed as " + kernel.describe() + ": " + why};
  };
  if (weight.float_bits != kernel.float_bits) return no("the weight types differ");
  if (weight.is_float()) return ok_status();
  if (weight.is_signed != kernel.is_signed) return no("int4 and uint4 differ");
  if (weight.f16_scale != kernel.f16_scale) return no("the scale precision differs");
  if (weight.has_zero_point && !kernel.has_zero_point) return no("the kernel reads no zero points");
  if (weight.per_n && !kernel.per_n) return no("the kernel's scales do not change with n");
  if (weight.k_group > 0 && (kernel.k_group <= 0 || weight.k_group % kernel.k_group != 0))
    return no("the kernel's k groups do not divide the weight's");
  return ok_status();
}

namespace {

// The int8-dot-product packing (the header's second table); `f` is the kernel's format.
PackedInt4Buffers pack_vnni(const QuantizedWeight& w, bool trans_b, const Int4Layout& layout, const Int4Format& f,
                            int64_t K, int64_t N) {
  int64_t P = layout.panel, panels = packed_panels(layout, N);
  int64_t KQ = (K + layout.k_align - 1) / layout.k_align * layout.k_align / 8;  // 8 k per 32-bit lane
  PackedInt4Buffers out;
  out.K = K;
  out.N = N;
  out.layout = layout;
  out.format = f;
  out.packed = Halide::Runtime::Buffer<uint8_t>(int(4 * P), int(KQ), int(panels));
  std::memset(out.packed.data(), 0, out.packed.size_in_bytes());
  const uint8_t* src = w.data.bytes();
  uint8_t* dst = static_cast<uint8_t*>(out.packed.data());
  int to_unsigned = f.is_signed ? 8 : 0;  // int4 q (two's complement nibble) -> q + 8
  auto put = [&](int64_t k, int64_t n) {
    int u = unpack_nibble(src, flat_index(k, n, K, N, trans_b), false) ^ to_unsigned;
    int64_t byte = 4 * (n % P) + (k % 8) / 2 + 4 * P * (k / 8 + KQ * (n / P));
    dst[byte] |= uint8_t(u << ((k & 1) * 4));
  };
  for_each_element(K, N, trans_b, put);
  int64_t gj = f.per_n ? P : 1, gp = f.per_n ? panels : 1;
  int64_t groups = f.k_group > 0 ? 8 * KQ / f.k_group : 1;
  out.scale = Halide::Runtime::Buffer<float>(int(gj), int(groups), int(gp));
  std::memset(out.scale.data(), 0, out.scale.size_in_bytes());
  if (f.has_zero_point) {
    out.zero = Halide::Runtime::Buffer<int8_t>(int(gj), int(groups), int(gp));
    out.zero.fill(0);
  }
  float* scale = static_cast<float*>(out.scale.data());
  for (int64_t p = 0; p < gp; ++p)
    for (int64_t j = 0; j < gj && p * P + j < N; ++j)
      for (int64_t g = 0; g < groups; ++g) {
        int64_t n = p * P + j, k = g * std::max<int64_t>(f.k_group, 1);
        if (k >= K) continue;
        int64_t src_index = w.param_index(flat_index(k, n, K, N, trans_b));
        int64_t dst_index = j + gj * (g + groups * p);
        scale[dst_index] = w.scale.get(src_index);  // float16 widens exactly
        if (f.has_zero_point)
          out.zero.data()[dst_index] = int8_t((w.zero_point.empty() ? 0 : w.zero_point.get_int(src_index)) + to_unsigned);
      }
  return out;
}

// An unquantized float weight in panels of one element per k (the header's third table).
PackedInt4Buffers pack_float(const QuantizedWeight& w, bool trans_b, const Int4Layout& layout, const Int4Format& f,
                             int64_t K, int64_t N) {
  int64_t P = layout.panel, panels = packed_panels(layout, N);
  int64_t Ka = (K + layout.k_align - 1) / layout.k_align * layout.k_align;
  PackedInt4Buffers out;
  out.K = K;
  out.N = N;
  out.layout = layout;
  out.format = f;
  size_t elem = f.float_bits / 8;
  out.packed = Halide::Runtime::Buffer<>(halide_type_t(halide_type_float, uint8_t(f.float_bits)), int(P), int(Ka),
                                         int(panels));
  std::memset(out.packed.data(), 0, out.packed.size_in_bytes());
  const uint8_t* src = w.data.bytes();
  uint8_t* dst = static_cast<uint8_t*>(out.packed.data());
  for_each_element(K, N, trans_b, [&](int64_t k, int64_t n) {
    std::memcpy(dst + (n % P + P * (k + Ka * (n / P))) * elem, src + flat_index(k, n, K, N, trans_b) * elem, elem);
  });
  return out;
}

// `dense` (row, rows, panels) with `pad` zero elements after each panel (the layout's panel padding).
Halide::Runtime::Buffer<> with_panel_padding(const Halide::Runtime::Buffer<>& dense, int pad) {
  halide_dimension_t dims[3];
  for (int d = 0; d < 3; ++d) dims[d] = dense.raw_buffer()->dim[d];
  dims[2].stride = dims[1].stride * dims[1].extent + pad;
  Halide::Runtime::Buffer<> padded(dense.type(), nullptr, 3, dims);
  padded.allocate();
  std::memset(padded.data(), 0, padded.size_in_bytes());
  const size_t panel_bytes = size_t(dims[1].stride) * size_t(dims[1].extent) * dense.type().bytes();
  for (int p = 0; p < dims[2].extent; ++p)
    std::memcpy(static_cast<uint8_t*>(padded.data()) + size_t(p) * size_t(dims[2].stride) * dense.type().bytes(),
                static_cast<const uint8_t*>(dense.data()) + size_t(p) * panel_bytes, panel_bytes);
  return padded;
}

Result<PackedInt4Buffers> pack_dense(const QuantizedWeight& w, bool trans_b, const Int4Layout& layout,
                                     const Int4Format* as) {
  Result<Int4Format> format = int4_format_of(w, trans_b);
  if (!format) return format.failure();
  const bool by_eight = layout.vnni || layout.words;
  if (layout.panel <= 0 || layout.k_align <= 0 || layout.k_align % (by_eight ? 8 : 2) != 0)
    return unsupported(w, std::string("the panel width must be positive and k_align a positive multiple of ") +
                              (by_eight ? "8" : "2"));
  Int4Format weight_format = layout.vnni ? int8_kernel_format(format.value()) : format.value();
  if (as) {
    if (Status st = check_packable(weight_format, *as); !st) return st.failure();
  }
  // Each cell of the (possibly finer) grid takes the one parameter its elements share.
  const Int4Format& f = as ? *as : weight_format;
  bool weight_has_zp = format.value().has_zero_point;
  int64_t K = trans_b ? w.shape()[1] : w.shape()[0];
  int64_t N = trans_b ? w.shape()[0] : w.shape()[1];
  if (f.is_float()) {
    if (layout.vnni || layout.words) return unsupported(w, "a float weight has no int8-dot-product or word packing");
    return pack_float(w, trans_b, layout, f, K, N);
  }
  if (layout.vnni) {
    if (f.k_group > 0 && layout.k_align % f.k_group != 0)
      return unsupported(w, "the int8-dot-product packing pads K to whole k-groups: k_align " +
                                std::to_string(layout.k_align) + " is not a multiple of " + std::to_string(f.k_group));
    PackedInt4Buffers vnni = pack_vnni(w, trans_b, layout, f, K, N);
    if (layout.words) {  // the same bytes, a column's 4 as one little-endian uint32
      const Halide::Runtime::Buffer<>& bytes = vnni.packed;
      Halide::Runtime::Buffer<uint32_t> words(bytes.dim(0).extent() / 4, bytes.dim(1).extent(), bytes.dim(2).extent());
      std::memcpy(words.data(), bytes.data(), bytes.size_in_bytes());
      vnni.packed = std::move(words);
    }
    return vnni;
  }
  int64_t P = layout.panel, panels = packed_panels(layout, N);
  int64_t KP = (K + layout.k_align - 1) / layout.k_align * layout.k_align / 2;  // packed rows, padded

  PackedInt4Buffers out;
  out.K = K;
  out.N = N;
  out.layout = layout;
  out.format = f;
  out.packed = Halide::Runtime::Buffer<uint8_t>(int(P), int(KP), int(panels));
  std::memset(out.packed.data(), 0, out.packed.size_in_bytes());
  const uint8_t* src = w.data.bytes();
  uint8_t* dst = static_cast<uint8_t*>(out.packed.data());  // dense: j fastest, then kp, then p
  int flip = !f.is_signed && f.signed_nibbles() ? 8 : 0;  // uint4 u stored as the int4 u - 8
  auto put = [&](int64_t k, int64_t n) {
    int q = unpack_nibble(src, flat_index(k, n, K, N, trans_b), false) ^ flip;  // 4 bits
    dst[n % P + P * (k / 2 + KP * (n / P))] |= uint8_t(q << ((k & 1) * 4));
  };
  for_each_element(K, N, trans_b, put);

  // The scale and zero-point grids: one entry per (j', g, p) that the format distinguishes.
  int64_t gj = f.per_n ? P : 1, gp = f.per_n ? panels : 1;
  int64_t groups = f.k_group > 0 ? (2 * KP + f.k_group - 1) / f.k_group : 1;  // covers the padded k too
  out.scale = Halide::Runtime::Buffer<>(f.f16_scale ? halide_type_t(halide_type_float, 16) : halide_type_t(halide_type_float, 32),
                                        int(gj), int(groups), int(gp));
  std::memset(out.scale.data(), 0, out.scale.size_in_bytes());
  if (f.has_zero_point) {
    out.zero = Halide::Runtime::Buffer<int8_t>(int(gj), int(groups), int(gp));
    out.zero.fill(0);
  }
  size_t elem = f.f16_scale ? 2 : 4;
  for (int64_t p = 0; p < gp; ++p) {
    for (int64_t j = 0; j < gj && p * P + j < N; ++j) {
      for (int64_t g = 0; g < groups; ++g) {
        int64_t n = p * P + j, k = g * std::max<int64_t>(f.k_group, 1);
        if (k >= K) continue;  // the padding row of an odd K
        int64_t src_index = w.param_index(flat_index(k, n, K, N, trans_b));
        int64_t dst_index = j + gj * (g + groups * p);  // the grid is dense, j fastest
        std::memcpy(static_cast<uint8_t*>(out.scale.data()) + dst_index * elem, w.scale.bytes() + src_index * elem,
                    elem);
        if (f.has_zero_point)
          out.zero.data()[dst_index] = int8_t((weight_has_zp ? w.zero_point.get_int(src_index) : 0) - flip);
      }
    }
  }
  // Padding rows (k >= K) of a group that starts before K hold its zero point, so that q - zp is 0
  // there: kernels that sum whole k-groups (block sums) may read them.
  if (f.has_zero_point && f.k_group > 0) {
    for (int64_t k = K; k < 2 * KP; ++k)
      for (int64_t n = 0; n < N; ++n) {
        int64_t j = n % P, p = n / P, g = k / f.k_group;
        int8_t zp = out.zero.data()[(f.per_n ? j : 0) + gj * (g + groups * (f.per_n ? p : 0))];
        dst[j + P * (k / 2 + KP * p)] |= uint8_t((zp & 0xF) << ((k & 1) * 4));
      }
  }
  if (layout.words) {  // four packed rows (8 k) of a column in one word, the first row in the low byte
    Halide::Runtime::Buffer<uint32_t> words(int(P), int(KP / 4), int(panels));
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t kw = 0; kw < KP / 4; ++kw)
        for (int64_t j = 0; j < P; ++j) {
          uint32_t word = 0;
          for (int64_t b = 0; b < 4; ++b) word |= uint32_t(dst[j + P * (4 * kw + b + KP * p)]) << (8 * b);
          words(int(j), int(kw), int(p)) = word;
        }
    out.packed = std::move(words);
  }
  return out;
}

}  // namespace

Result<PackedInt4Buffers> pack_int4_weight(const QuantizedWeight& w, bool trans_b, const Int4Layout& layout,
                                           const Int4Format* as) {
  if (layout.panel_pad_bytes < 0 || layout.panel_pad_bytes % 16 != 0)
    return unsupported(
        w, "the panel padding must be a multiple of 16 bytes, not " + std::to_string(layout.panel_pad_bytes));
  Result<PackedInt4Buffers> packed = pack_dense(w, trans_b, layout, as);
  if (!packed || layout.panel_pad_bytes == 0) return packed;
  PackedInt4Buffers out = std::move(packed).value();
  out.packed = with_panel_padding(out.packed, layout.panel_pad_bytes / out.packed.type().bytes());
  return out;
}

}  // namespace tetra::dsl
