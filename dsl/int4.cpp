#include "dsl/int4.h"

namespace tetra::dsl {

namespace {
// A field of `p` ("extent.1") by name alone: a constraint holding the parameter itself would make a
// reference cycle (parameter -> constraint -> parameter) that is never freed.
Halide::Expr field_of(const Halide::ImageParam& p, const std::string& field) {
  return Halide::Internal::Variable::make(Halide::Int(32), p.name() + "." + field);
}
}  // namespace

PackedInt4::PackedInt4(const std::string& name, const Int4Format& format, const Int4Layout& layout)
    : format_(format),
      layout_(layout),
      vnni_(layout.vnni),
      words_(layout.words),
      packed_(format.is_float() ? Halide::Float(format.float_bits)
              : words_          ? Halide::UInt(32)
                                : Halide::UInt(8),
              3, name + "_packed"),
      scale_(format.f16_scale && !vnni_ ? Halide::Float(16) : Halide::Float(32), 3, name + "_scale"),
      zero_(Halide::Int(8), 3, name + "_zero") {
  // Constant panel width and strides let LLVM fold the address arithmetic. Panels are dense (as
  // pack_int4_weight lays them out) up to the layout's padding, a multiple of 16 bytes: with an aligned
  // buffer, a GPU thread's adjacent columns are one aligned vector load.
  const int panel = layout.panel;
  const int row = vnni_ && !words_ ? 4 * panel : panel;
  const int pad = layout.panel_pad_bytes / packed_.type().bytes();
  packed_.dim(0).set_bounds(0, row).dim(1).set_min(0).set_stride(row);
  packed_.dim(2).set_min(0).set_stride(row * field_of(packed_, "extent.1") + pad);
  int gj = format.per_n ? panel : 1;
  for (Halide::ImageParam* grid : {&scale_, &zero_}) {
    grid->dim(0).set_bounds(0, gj).dim(1).set_min(0).set_stride(gj);
    grid->dim(2).set_min(0).set_stride(gj * field_of(*grid, "extent.1"));
  }
}

Halide::Expr PackedInt4::container(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const {
  using namespace Halide;
  if (words_) {
    // Two's complement nibbles become unsigned codes u = q + 8 with one XOR of the word, shared by its 8 k.
    Expr w = reinterpret<uint32_t>(packed_(j, k / 8, p));
    if (format_.signed_nibbles()) w = w ^ Internal::UIntImm::make(UInt(32), 0x88888888u);
    return reinterpret<int32_t>(w);
  }
  return cast<int32_t>(packed_(j, k / 2, p));
}

Halide::Expr PackedInt4::nibble_shift(const Halide::Expr& k) const { return 4 * (k % (words_ ? 8 : 2)); }

Halide::Expr PackedInt4::code(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const {
  using namespace Halide;
  // k's position in its byte (or word) picks the nibble; it is a constant once a schedule unrolls k by
  // 2 (or 8). Bytes: both nibbles come from one zero-extended int32 vector. Two shifts move a nibble to
  // the top and back down, the arithmetic one sign-extending (left shifts are on uint32: Halide would
  // cancel a signed pair).
  Expr z = container(j, k, p);
  Expr g = format_.k_group > 0 ? k / int(format_.k_group) : Expr(0);
  if (words_) {
    // The unsigned code u (two's complement nibbles XOR 8) becomes a float without a conversion
    // instruction: 0x4B000000 | u is the float 2^23 + u. Then q - zp = u - offset, exactly.
    Expr u = (reinterpret<uint32_t>(z) >> cast<uint32_t>(nibble_shift(k))) & cast<uint32_t>(15);
    Expr as_float = reinterpret<float>(u | cast<uint32_t>(0x4B000000)) - 8388608.0f;
    return as_float - cast<float>(word_offset(j, g, p));
  }
  Expr q;
  if (format_.signed_nibbles()) {
    Expr odd = k % 2 == 1;
    Expr zu = reinterpret<uint32_t>(z);
    q = select(odd, reinterpret<int32_t>(zu << 24) >> 28, reinterpret<int32_t>(zu << 28) >> 28);
  } else {
    q = select(k % 2 == 1, z >> 4, z & 15);
  }
  if (format_.has_zero_point) q -= cast<int32_t>(zero_(grid_j(j), g, grid_p(p)));  // exact: |q - zp| <= 15
  return cast<float>(q);
}

Halide::Expr PackedInt4::offset_code(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const {
  using namespace Halide;
  if (words_) {
    return cast<float>((reinterpret<uint32_t>(container(j, k, p)) >> cast<uint32_t>(nibble_shift(k))) &
                       cast<uint32_t>(15));
  }
  Expr b = packed_(j, k / 2, p);
  if (format_.signed_nibbles()) b = b ^ cast<uint8_t>(0x88);  // two's complement q -> q + 8, both nibbles
  return cast<float>(select(k % 2 == 1, b >> 4, b & cast<uint8_t>(15)));
}

Halide::Expr PackedInt4::code_offset(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const {
  using namespace Halide;
  if (!format_.signed_nibbles()) return Expr(0.0f);
  Expr offset = Expr(8);
  if (format_.has_zero_point) offset += cast<int32_t>(zero_(grid_j(j), g, grid_p(p)));
  return cast<float>(offset);
}

Halide::Expr PackedInt4::code_word(const Halide::Expr& j, const Halide::Expr& kw, const Halide::Expr& p) const {
  return Halide::reinterpret<uint32_t>(container(j, kw * 8, p));
}

Halide::Expr PackedInt4::word_offset(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const {
  using namespace Halide;
  Expr offset = Expr(format_.signed_nibbles() ? 8 : 0);
  if (format_.has_zero_point) offset += cast<int32_t>(zero_(grid_j(j), g, grid_p(p)));
  return offset;
}

Halide::Expr PackedInt4::scale(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const {
  return Halide::cast<float>(scale_(grid_j(j), g, grid_p(p)));
}

Halide::Expr PackedInt4::panel(const Halide::Expr& j, const Halide::Expr& k, const Halide::Expr& p) const {
  if (format_.is_float()) return Halide::cast<float>(packed_(j, k, p));
  Halide::Expr g = format_.k_group > 0 ? k / int(format_.k_group) : Halide::Expr(0);
  if (words_ && !format_.f16_scale) {
    // Two integer operations and one multiply-add a weight: (q - zp) s = (16 + u) s - (16 + offset) s, where
    // 16 + u is u moved into the mantissa of 16.0 (exact), and (16 + offset) s is per group, hoisted out of
    // the group's k. Within one rounding of the direct product: the product is in [16 s, 32 s).
    using namespace Halide;
    Expr u = (reinterpret<uint32_t>(container(j, k, p)) >> cast<uint32_t>(nibble_shift(k))) & cast<uint32_t>(15);
    Expr sixteen_plus = reinterpret<float>((u << cast<uint32_t>(19)) | cast<uint32_t>(0x41800000));
    Expr s = scale(j, g, p);
    // An explicit multiply-add: written as a product and a difference, Halide factors out s, which costs
    // a subtraction and a product a weight.
    Expr group_offset = cast<float>(16 + word_offset(j, g, p)) * s;
    return Internal::Call::make(Float(32), "tetra_fma", {sixteen_plus, s, -group_offset}, Internal::Call::PureExtern);
  }
  Halide::Expr v = code(j, k, p) * scale(j, g, p);
  if (format_.f16_scale) v = Halide::cast<float>(Halide::cast<Halide::float16_t>(v));
  return v;
}

Halide::Expr PackedInt4::byte(const Halide::Expr& jb, const Halide::Expr& kq, const Halide::Expr& p) const {
  return packed_(jb, kq, p);
}

Halide::Expr PackedInt4::dot_word(const Halide::Expr& j, const Halide::Expr& kq, const Halide::Expr& p) const {
  return packed_(j, kq, p);
}

Halide::Expr PackedInt4::offset(const Halide::Expr& j, const Halide::Expr& g, const Halide::Expr& p) const {
  if (format_.has_zero_point) return Halide::cast<int32_t>(zero_(grid_j(j), g, grid_p(p)));
  return Halide::Expr(format_.is_signed ? 8 : 0);
}

Halide::Expr PackedInt4::grid_j(const Halide::Expr& j) const { return format_.per_n ? j : Halide::Expr(0); }
Halide::Expr PackedInt4::grid_p(const Halide::Expr& p) const { return format_.per_n ? p : Halide::Expr(0); }

Halide::Expr PackedInt4::operator()(const Halide::Expr& k, const Halide::Expr& n) const {
  return panel(n % layout_.panel, k, n / layout_.panel);
}

std::vector<Halide::ImageParam> PackedInt4::params() const {
  if (format_.is_float()) return {packed_};
  std::vector<Halide::ImageParam> params = {packed_, scale_};
  if (format_.has_zero_point) params.push_back(zero_);
  return params;
}

std::vector<Halide::Argument> PackedInt4::arguments() const {
  std::vector<Halide::Argument> args;
  for (const Halide::ImageParam& p : params()) args.push_back(p);
  return args;
}

Status PackedInt4::bind(Halide::ParamMap& params, const PackedInt4Buffers& b) const {
  if (b.layout.panel != layout_.panel || b.layout.vnni != vnni_ || b.layout.words != words_ ||
      b.layout.panel_pad_bytes != layout_.panel_pad_bytes || b.layout.panel_multiple != layout_.panel_multiple)
    return Failure{FailureKind::Run, packed_.name(),
                   "the weight is packed as " + b.layout.describe() + ", the kernel expects " + layout_.describe() +
                       " (repack it for this kernel)"};
  if (!(b.format == format_))
    return Failure{FailureKind::Run, packed_.name(),
                   "the weight is " + b.format.describe() + ", the kernel was compiled for " + format_.describe()};
  params.set(packed_, Halide::Buffer<>(*b.packed.raw_buffer()));
  if (format_.is_float()) return ok_status();
  params.set(scale_, Halide::Buffer<>(*b.scale.raw_buffer()));
  if (format_.has_zero_point) params.set(zero_, Halide::Buffer<>(*b.zero.raw_buffer()));
  return ok_status();
}

}  // namespace tetra::dsl
