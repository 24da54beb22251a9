// Packed int4 weights in kernels: the formats and the load-time repacking (no libHalide needed:
// model libraries built by `tetra compile` pack their weights with this code).
//
// A kernel sees the logical weight W[K, N] (k: the reduction axis, n: the output column) as panels
// of `panel` (P) columns, still 4-bit, repacked once when the model is loaded:
//
//   packed(j, kp, p)  uint8    low nibble q(2kp, n), high nibble q(2kp+1, n), where n = p*P + j
//   scale(j', g, p)   float32 or float16 (the model's precision): the scale grid
//   zero(j', g, p)    int8     the zero-point grid, when there is one
//
// j in [0, P), kp in [0, Ka/2), p in [0, ceil(N/P)), with K padded to Ka, a multiple of the layout's
// k_align. Nibbles pair along k, so a vector over j is one dense byte load and the nibble is picked
// by k's parity (one shift for the whole vector). Each panel is one contiguous stream, which a
// memory-bound GEMV reads front to back. The grid index is g = k / k_group (0 when scales do not
// change along k) and j' = j (0 when they do not change along n). Padding (k >= K, n >= N) holds
// zero nibbles, scales and zero points, except that padding rows of a k-group that starts before K
// hold the group's zero point, so q - zp is 0 there too.
//
//   W(k, n) = float(q - zp) * scale        q sign-extended (int4) or zero-extended (uint4)
//
// equals DequantizeLinear's (q - zp) * scale bit for bit: q - zp is a small integer, exact in fp32,
// and the product is rounded once. Float16 scales also round that product to float16, as
// QuantizedWeight::value() does. A uint4 weight with zero points is stored as int4 nibbles u - 8
// (u XOR 8) with zero points zp - 8: sign-extending costs fewer instructions than masking does.
// The fp32 weight is never materialised except in the small stages a schedule asks for.
//
// The int8-activation kernels (Int4Layout::vnni) read another packing, made for 4-way u8 x s8 dot
// products (x86 VNNI vpdpbusd; AMD's v_dot4 and NVIDIA's dp4a take the same shape):
//
//   packed(4j + b, kq, p)  uint8   low nibble u(8kq + 2b, n), high nibble u(8kq + 2b + 1, n)
//   scale(j', g, p)        float32 always (float16 scales are widened)
//   zero(j', g, p)         int8    zp + 8 for int4, zp for uint4
//
// b in [0, 4): one 32-bit lane per column holds 8 consecutive k, so the low nibbles of a 64-byte
// vector are k = 0, 2, 4, 6 of 16 columns and the high nibbles k = 1, 3, 5, 7. The codes are
// unsigned, u = q + 8 for int4 (q XOR 8) and u = q for uint4, so that q - zp = u - (zp + 8) or
// u - zp: the offset is the zero-point grid, or the constant 8 (int4) or 0 (uint4) without one.
// K is padded to a multiple of k_align (itself a multiple of 8); padding codes are 0.
//
// An unquantized float weight (Int4Format::is_float) takes the panel layout with one element per k:
//
//   packed(j, k, p)  float32 or float16   W(k, n), n = p*P + j; 0 past K and N; no scale or zero grid
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "HalideBuffer.h"
#include "dsl/core/result.h"
#include "importer/graph.h"

namespace tetra::dsl {

// The bytes of a kernel input buffer's elements (0 when it has none): what a kernel that reads it all
// streams. Padding between a weight's panels is not counted: no kernel reads it.
template <class T>
int64_t buffer_bytes(const Halide::Runtime::Buffer<T>& b) {
  return b.data() ? int64_t(b.number_of_elements()) * b.type().bytes() : 0;
}

// What the generated code depends on (shapes do not: K and N are read from the buffers).
struct Int4Format {
  bool is_signed = true;        // int4 or uint4
  bool has_zero_point = false;  // a zero-point grid is read; otherwise zp = 0
  int64_t k_group = 0;          // scales change every k_group values of k; 0: they never do
  bool per_n = false;           // scales change with n
  bool f16_scale = false;       // scales are float16 and every dequantized value is rounded to float16
  // 32 or 16: an unquantized float32 / float16 weight (QuantizedWeight::is_float), read as it is; the
  // fields above do not apply. 0: int4 / uint4 codes.
  int float_bits = 0;

  bool is_float() const { return float_bits != 0; }

  // Whether the packed nibbles are two's complement (int4, or uint4 with zero points; see above).
  bool signed_nibbles() const { return is_signed || has_zero_point; }

  // "int4 blocked(k,32) zp f32", "uint4 per-n f16": part of the tuning database's workload key.
  std::string describe() const;
  bool operator==(const Int4Format& o) const {
    return is_signed == o.is_signed && has_zero_point == o.has_zero_point && k_group == o.k_group &&
           per_n == o.per_n && f16_scale == o.f16_scale && float_bits == o.float_bits;
  }
};

// The weight of a tetra.QMatMul: data [K, N] when trans_b is 0, [N, K] when it is 1.
// Per-axis and blocked scales along k or n are all expressed as a (k_group, per_n) grid; a weight
// blocked along n is expanded to one scale per (k, n) (correct, but large: such models are rare).
Result<Int4Format> int4_format_of(const QuantizedWeight& weight, bool trans_b);

// The shape of the packing a kernel needs: the panel width, and a multiple of k that the packed
// rows are padded to (a schedule that stages k in blocks reads whole blocks).
struct Int4Layout {
  int panel = 16;
  int k_align = 2;
  bool vnni = false;  // the int8-dot-product packing above (k_align a multiple of 8)
  // The nibbles of 8 consecutive k of one column in one uint32 word (the first k in the low nibble),
  // words laid out as the bytes are: (P, Ka/8, panels). A GPU thread loads 8 weights at once, 128 bytes
  // a wave of 32. k_align a multiple of 8. With vnni: the vnni packing's 4 bytes of a column as one
  // uint32 (P, Ka/8, panels), for GPU int8 dot products.
  bool words = false;
  // Bytes of padding after each panel (a multiple of 16, so that vector loads stay aligned): a GPU's
  // memory channels interleave every few hundred bytes, and panels that start at a multiple of the
  // channels' period put every block's first loads on one channel. The packed buffer then has
  // dim(2).stride = P * dim(1).extent + panel_pad_bytes / element bytes; its pad bytes are zero.
  int panel_pad_bytes = 0;
  // The panel count is rounded up to a multiple of this, the extra panels zero. A GPU GEMM's block
  // computes whole tiles of this many panels, and its columns past N, never stored, still read the
  // weight: within the buffer, not past it.
  int panel_multiple = 1;

  std::string describe() const;  // "64/32", "64/32 vnni", "64/8 words pad 256", "4/2 tiles of 16"
};

// The panels a weight of N columns is packed in (Int4Layout::panel_multiple included).
int64_t packed_panels(const Int4Layout& layout, int64_t N);

// The bytes of one dense panel of `layout` holding K values of k of a weight of format `format` (the
// packings above, before the layout's padding).
int64_t dense_panel_bytes(const Int4Layout& layout, const Int4Format& format, int64_t K);

// The weight repacked into panels, ready to bind to a kernel's inputs.
struct PackedInt4Buffers {
  int64_t K = 0, N = 0;
  Int4Layout layout;
  Int4Format format;
  // uint8 (P, ceil(K/2), panels); words: uint32 (P, Ka/8, panels); vnni: (4P, Ka/8, panels), or uint32
  // (P, Ka/8, panels) with words; float: (P, Ka, panels). Dense, except for the layout's panel padding.
  Halide::Runtime::Buffer<> packed;
  Halide::Runtime::Buffer<> scale;          // (P or 1, groups, panels or 1), float32 or float16
  Halide::Runtime::Buffer<int8_t> zero;     // shaped as scale; undefined without zero points

  int64_t bytes() const;  // what a kernel streams: packed + scale + zero
};

// The format the int8-activation kernels (Int4Layout::vnni) read a weight of format `weight` in: its
// float16 scales widened to float32 (the second table above).
Int4Format int8_kernel_format(Int4Format weight);

// Whether a weight of format `weight` can be packed as `kernel` (a finer grid, or zero points where the
// weight has none): a kernel compiled for blocked scales also runs per-n or per-tensor weights.
Status check_packable(const Int4Format& weight, const Int4Format& kernel);

// Repacks `weight` (a QMatMul weight, see int4_format_of) into `layout`, in its own format or, when
// `as` is given, in that (compatible) format.
Result<PackedInt4Buffers> pack_int4_weight(const QuantizedWeight& weight, bool trans_b, const Int4Layout& layout,
                                           const Int4Format* as = nullptr);

}  // namespace tetra::dsl
