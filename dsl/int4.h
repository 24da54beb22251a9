// The packed weight as Halide inputs and the dequantizing access expression; the formats and the
// packing itself are in dsl/core/int4_format.h.
#pragma once
#include <string>
#include <vector>

#include "Halide.h"
#include "dsl/core/int4_format.h"

namespace tetra::dsl {

// The packed weight as Halide inputs, and the dequantizing access expression.
class PackedInt4 {
 public:
  // The layout's `vnni`: the int8-dot-product packing (dsl/core/int4_format.h); only byte(), offset() and
  // scale() apply. `words`: the nibbles of 8 k in one uint32; code, offset_code and panel apply. Both: the
  // vnni packing's 4 bytes of a column as one uint32; only dot_word(), offset() and scale() apply. Its
  // k_align is the packer's alone.
  PackedInt4(const std::string& name, const Int4Format& format, const Int4Layout& layout);

  // W(k, n) at n = p*P + j: reads one packed byte, takes the nibble of k's parity, subtracts the
  // zero point and multiplies the scale, in fp32 (a float weight: the stored value, widened). Meant to be inlined into a consumer's loop nest
  // (or into a small stage Func that a schedule places), so the weight stays 4-bit in memory.
  Halide::Expr panel(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const;
  // The parts of panel(): float(q - zp), exact, and the scale of k-group g as float32. Int4 only, as are
  // offset_code, code_offset, byte and offset.
  Halide::Expr code(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const;
  Halide::Expr scale(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const;
  // The unsigned code u = q - zp + offset in [0, 15] of the panel packing, one mask or shift per nibble
  // (the stored nibble XOR 8 when nibbles are two's complement), and that offset as a float: 8 + the
  // stored zero point, or 0 for uint4 without zero points. Exact: small integers.
  Halide::Expr offset_code(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const;
  Halide::Expr code_offset(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const;
  // The vnni packing: the byte at (4j + b, kq, p), and the offset that makes its unsigned codes
  // q - zp (the zero-point grid at k-group g, or the constant 8 for int4, 0 for uint4), as int32.
  Halide::Expr byte(const Halide::Expr& jb, const Halide::Expr& kq, const Halide::Expr& p) const;
  Halide::Expr offset(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const;
  // The vnni packing as words: column j's 8 codes of k = 8kq .. 8kq + 7, k = 8kq + 2b in byte b's low
  // nibble and 8kq + 2b + 1 in its high one.
  Halide::Expr dot_word(const Halide::Expr& j, const Halide::Expr& kq, const Halide::Expr& p) const;
  // The words packing: column j's word kw as uint32, 8 unsigned codes u, k = 8kw + t in bits 4t .. 4t + 3
  // (two's complement nibbles XOR 8), and what u is offset by at k-group g (u - offset = q - zp), as int32.
  Halide::Expr code_word(const Halide::Expr& j, const Halide::Expr& kw, const Halide::Expr& p) const;
  Halide::Expr word_offset(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const;
  // W(k, n) by logical column; fine for simple consumers, but vectors over n gather (n % P, n / P).
  Halide::Expr operator()(const Halide::Expr& k, const Halide::Expr& n) const;

  const Int4Format& format() const { return format_; }
  int panel_width() const { return layout_.panel; }
  std::vector<Halide::Argument> arguments() const;
  std::vector<Halide::ImageParam> params() const;  // the same, as the ImageParams
  // Binds `buffers` to this weight's ImageParams (they must have this format and panel).
  Status bind(Halide::ParamMap& params, const PackedInt4Buffers& buffers) const;

 private:
  Halide::Expr grid_j(const Halide::Expr& j) const;  // the scale grid's j and p: 0 unless per-n
  Halide::Expr grid_p(const Halide::Expr& p) const;
  Int4Format format_;
  Int4Layout layout_;
  bool vnni_, words_;  // the layout's
  Halide::ImageParam packed_, scale_, zero_;
  // The packed element holding k's nibble as an int32, and the nibble's position in it (0, 4, ...). A word
  // holds unsigned codes u = q + 8 when nibbles are two's complement (one XOR for its 8 k).
  Halide::Expr container(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const;
  Halide::Expr nibble_shift(const Halide::Expr& k) const;
};

}  // namespace tetra::dsl
