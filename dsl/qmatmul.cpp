#include "dsl/qmatmul.h"

#include "dsl/elementwise_expr.h"
#include "dsl/gpu/emit_kernel.h"

namespace tetra::dsl {

namespace {

void set_arguments(QMatMulDef& q) {
  q.def.arguments.clear();
  for (const PipelineParam& p : q.params()) std::visit([&](const auto& v) { q.def.arguments.push_back(v); }, p);
}

// What the k-blocked algorithms (int8 and float16 activations) share after "acc": the output stage
// (alpha, the bias, the epilogue), the reductions over the blocks and within one, extents and buffer mins.
void finish_blocked_def(QMatMulDef& q, Halide::Func output, Halide::Func acc, const Axis& n, const Axis& m,
                        const Halide::RDom& blocks, const Halide::Expr& groups_count, const Halide::RDom& in_block) {
  ComputeDef& d = q.def;
  Halide::Expr y = q.alpha * acc(n.var % q.panel, n.var / q.panel, m.var);
  if (q.workload.has_bias) y += q.beta * q.bias(n.var);
  output(n.var, m.var) = apply_output_epilogue(y, q.workload.epilogue, q.residual(n.var, m.var));
  d.reduce_axes.push_back(ReduceAxis{"k", blocks, groups_count});
  d.reduce_axes.push_back(ReduceAxis{"in_block", in_block, int(q.workload.activation_block())});
  d.extents = {{"M", q.A.dim(1).extent()}, {"K", q.A.dim(0).extent()}, {"N", output.output_buffer().dim(0).extent()}};
  q.A.dim(0).set_min(0).dim(1).set_min(0);
  q.bias.dim(0).set_min(0);
  q.residual.dim(0).set_min(0).dim(1).set_min(0);
  output.output_buffer().dim(0).set_min(0).dim(1).set_min(0);
  d.output = output;
}

}  // namespace

std::vector<PipelineParam> QMatMulDef::params() const {
  std::vector<PipelineParam> p = {A};
  for (const Halide::ImageParam& w : W.params()) p.push_back(w);
  if (workload.has_bias) p.push_back(bias);
  if (workload.epilogue.residual) p.push_back(residual);
  p.push_back(alpha);
  p.push_back(beta);
  return p;
}

bool block_sums_apply(const QMatMulWorkload& w) {
  return w.format.k_group > 1 && w.format.k_group % 2 == 0 && !w.format.f16_scale;
}

QMatMulDef define_qmatmul(const QMatMulWorkload& workload, int panel, BlockSums block_sums) {
  return define_qmatmul(workload, Int4Layout{panel, 2}, block_sums);
}

QMatMulDef define_qmatmul(const QMatMulWorkload& workload, const Int4Layout& layout, BlockSums block_sums) {
  using namespace Halide;
  const int panel = layout.panel;
  QMatMulDef q(workload, layout);
  ComputeDef& d = q.def;
  d.op = "qmatmul";
  Axis n = make_axis("n"), m = make_axis("m"), j = make_axis("j"), p = make_axis("p"), k = make_axis("k");
  d.axes = {n, m, j, p, k};

  Func output("qmatmul"), a("a"), w("w"), acc("acc");
  Expr K = q.A.dim(0).extent(), M = q.A.dim(1).extent();
  ReduceAxis r = make_reduce_axis("k", K);

  // Algorithm
  a(k.var, m.var) = q.A(k.var, clamp(m.var, 0, M - 1));
  acc(j.var, p.var, m.var) = 0.0f;
  Func partial("partial"), a_sum("a_sum");
  if (block_sums != BlockSums::Off) {
    // Each k-group's sum of a * (q - zp), then one multiply by the group's scale. The weight is
    // packed to whole groups, so the last group may be partial: past K the codes are padding whose
    // q - zp is 0 (dsl/core/int4_format.h), and A is read clamped, a finite value.
    check(block_sums_apply(workload), ErrorKind::Invalid, "block sums need even k-groups: " + workload.key());
    const int G = int(workload.format.k_group);
    Axis g = make_axis("g");
    d.axes.push_back(g);
    Expr groups_count = (K + G - 1) / G;
    RDom in_group(0, G, "r");
    RDom groups(0, groups_count, "groups");
    Expr kk = g.var * G + in_group;
    partial(j.var, g.var, p.var, m.var) = 0.0f;
    if (block_sums == BlockSums::ZeroPointPerWeight) {
      w(j.var, k.var, p.var) = q.W.code(j.var, k.var, p.var);
      partial(j.var, g.var, p.var, m.var) += q.A(min(kk, K - 1), clamp(m.var, 0, M - 1)) * w(j.var, kk, p.var);
      acc(j.var, p.var, m.var) += partial(j.var, groups, p.var, m.var) * q.W.scale(j.var, groups, p.var);
    } else {
      // Past K the padding codes are not offset-free: A reads 0 there, in both sums.
      Expr a_kk = select(kk < K, q.A(min(kk, K - 1), clamp(m.var, 0, M - 1)), 0.0f);
      w(j.var, k.var, p.var) = q.W.offset_code(j.var, k.var, p.var);
      partial(j.var, g.var, p.var, m.var) += a_kk * w(j.var, kk, p.var);
      a_sum(g.var, m.var) = 0.0f;
      a_sum(g.var, m.var) += a_kk;
      Expr exact = partial(j.var, groups, p.var, m.var) - q.W.code_offset(j.var, groups, p.var) * a_sum(groups, m.var);
      acc(j.var, p.var, m.var) += exact * q.W.scale(j.var, groups, p.var);
    }
    r = ReduceAxis{"k", groups, groups_count};  // the reduction a schedule orders: over the groups
    d.reduce_axes = {ReduceAxis{"r", in_group, G}};
  } else {
    w(j.var, k.var, p.var) = q.W.panel(j.var, k.var, p.var);
    acc(j.var, p.var, m.var) += a(r.rvar(), m.var) * w(j.var, r.rvar(), p.var);
  }
  Expr y = q.alpha * acc(n.var % panel, n.var / panel, m.var);
  if (workload.has_bias) y += q.beta * q.bias(n.var);
  output(n.var, m.var) = apply_output_epilogue(y, workload.epilogue, q.residual(n.var, m.var));

  d.reduce_axes.insert(d.reduce_axes.begin(), r);
  d.extents = {{"M", M}, {"K", K}, {"N", output.output_buffer().dim(0).extent()}};

  // Buffers start at 0 and are dense in their first dimension; A's K must not exceed W's.
  q.A.dim(0).set_min(0).dim(1).set_min(0);
  q.bias.dim(0).set_min(0);
  q.residual.dim(0).set_min(0).dim(1).set_min(0);
  output.output_buffer().dim(0).set_min(0).dim(1).set_min(0);

  d.output = output;
  d.stages = {{"a", a}, {"w", w}, {"acc", acc}};
  if (block_sums != BlockSums::Off) d.stages["partial"] = partial;
  if (block_sums == BlockSums::ZeroPointPerBlock) d.stages["a_sum"] = a_sum;
  set_arguments(q);
  return q;
}

QMatMulDef define_qmatmul_int8(const QMatMulWorkload& workload, int panel) {
  Int4Layout layout{panel, 8};
  layout.vnni = true;
  return define_qmatmul_int8(workload, layout);
}

QMatMulDef define_qmatmul_int8(const QMatMulWorkload& workload, const Int4Layout& layout) {
  using namespace Halide;
  check(workload.int8_activations && int8_activations_supported(workload).ok() && !workload.format.f16_scale &&
            layout.vnni,
        ErrorKind::Invalid, "not an int8-activation workload in the vnni packing: " + workload.key());
  QMatMulDef q(workload, layout);
  ComputeDef& d = q.def;
  d.op = "qmatmul_int8";
  Axis n = make_axis("n"), m = make_axis("m"), j = make_axis("j"), p = make_axis("p"), k = make_axis("k");
  Axis g = make_axis("g"), b = make_axis("b"), h = make_axis("h"), kq = make_axis("kq");
  d.axes = {n, m, j, p, k, g, b, h, kq};

  const int B = int(workload.activation_block()), BQ = B / 8;
  Expr K = q.A.dim(0).extent(), M = q.A.dim(1).extent();
  Expr groups_count = (K + B - 1) / B;
  Func output("qmatmul"), a("a"), a_max("a_max"), a_q("a_q"), a_pairs(layout.words ? "a_words" : "a_pairs"),
      a_sum("a_sum");
  Func dot("dot"), acc("acc");

  // The activations, quantized per row and k-block (past K: zeros, which quantize to 0).
  a(k.var, m.var) = select(k.var < K, q.A(min(k.var, K - 1), clamp(m.var, 0, M - 1)), 0.0f);
  RDom in_block(0, B, "in_block");
  a_max(g.var, m.var) = 0.0f;
  a_max(g.var, m.var) = max(a_max(g.var, m.var), abs(a(g.var * B + in_block, m.var)));
  Expr amax = a_max(k.var / B, m.var);
  Expr inverse = select(amax > 0.0f, 127.0f / amax, 0.0f);
  a_q(k.var, m.var) = cast<int8_t>(clamp(round(a(k.var, m.var) * inverse), -127.0f, 127.0f));
  if (layout.words) {  // a_words(h, kq, m): the 4 a_q of a_pairs(0..3, h, kq, m) as the bytes of a uint32
    Expr word = cast<uint32_t>(0);
    for (int byte = 0; byte < 4; ++byte)
      word = word | (cast<uint32_t>(cast<uint8_t>(a_q(8 * kq.var + 2 * byte + h.var, m.var))) << (8 * byte));
    a_pairs(h.var, kq.var, m.var) = word;
  } else {
    a_pairs(b.var, h.var, kq.var, m.var) = a_q(8 * kq.var + 2 * b.var + h.var, m.var);
  }
  a_sum(g.var, m.var) = 0;
  a_sum(g.var, m.var) += cast<int32_t>(a_q(g.var * B + in_block, m.var));

  // The block's integer dot products: low nibbles pair with even k, high nibbles with odd k.
  dot(j.var, g.var, p.var, m.var) = 0;
  if (layout.words) {  // a word of 8 codes: two 4-way dot products (gpu::dot4_i8), codes 0..15 as int8
    RDom r(0, BQ, "r");
    Expr row = g.var * BQ + r;
    Expr word = q.W.dot_word(j.var, row, p.var);
    const Expr low_nibbles = Internal::UIntImm::make(UInt(32), 0x0F0F0F0Fu);
    Expr previous = dot(j.var, g.var, p.var, m.var);
    dot(j.var, g.var, p.var, m.var) = gpu::dot4_i8((word >> 4) & low_nibbles, a_pairs(1, row, m.var),
                                                   gpu::dot4_i8(word & low_nibbles, a_pairs(0, row, m.var), previous));
    d.reduce_axes.push_back(ReduceAxis{"r", r, BQ});
  } else {
    RDom r(0, 4, 0, 2, 0, BQ, "r");
    Expr row = g.var * BQ + r.z;
    Expr packed = q.W.byte(4 * j.var + r.x, row, p.var);
    Expr code = select(r.y == 0, packed & 15, packed >> 4);
    dot(j.var, g.var, p.var, m.var) += cast<int32_t>(code) * cast<int32_t>(a_pairs(r.x, r.y, row, m.var));
    d.reduce_axes.push_back(ReduceAxis{"r", r, B});
  }

  RDom blocks(0, groups_count, "blocks");
  Expr wg = workload.format.k_group > 0 ? Expr(blocks) : Expr(0);
  Expr exact = dot(j.var, blocks, p.var, m.var) - q.W.offset(j.var, wg, p.var) * a_sum(blocks, m.var);
  acc(j.var, p.var, m.var) = 0.0f;
  acc(j.var, p.var, m.var) += cast<float>(exact) * (a_max(blocks, m.var) / 127.0f * q.W.scale(j.var, wg, p.var));

  finish_blocked_def(q, output, acc, n, m, blocks, groups_count, in_block);
  d.stages = {{"a", a},         {"a_max", a_max}, {"a_q", a_q}, {layout.words ? "a_words" : "a_pairs", a_pairs},
              {"a_sum", a_sum}, {"dot", dot},     {"acc", acc}};
  set_arguments(q);
  return q;
}

QMatMulDef define_qmatmul_f16(const QMatMulWorkload& workload, const Int4Layout& layout) {
  using namespace Halide;
  const int B = int(workload.activation_block());
  check(workload.f16_activations && f16_activations_supported(workload).ok() && layout.words && !layout.vnni &&
            layout.k_align % B == 0,
        ErrorKind::Invalid, "not a float16-activation workload in words of whole blocks: " + workload.key());
  const int BW = B / 8;
  QMatMulDef q(workload, layout);
  ComputeDef& d = q.def;
  d.op = "qmatmul_f16";
  Axis n = make_axis("n"), m = make_axis("m"), j = make_axis("j"), p = make_axis("p"), k = make_axis("k");
  Axis g = make_axis("g"), t = make_axis("t"), kw = make_axis("kw");
  d.axes = {n, m, j, p, k, g, t, kw};

  Expr K = q.A.dim(0).extent(), M = q.A.dim(1).extent();
  // The k-blocks of the packed weight, K padded to layout.k_align (a whole number of blocks): those past K
  // add nothing, A being 0 there, and a schedule taking k-blocks in chunks of k_align needs no tail.
  Expr groups_count = (K + layout.k_align - 1) / layout.k_align * (layout.k_align / B);
  Func output("qmatmul"), a("a"), a_pairs("a_pairs"), a_sum("a_sum"), w_pairs("w_pairs"), dot("dot"), acc("acc");

  a(k.var, m.var) = select(k.var < K, q.A(min(k.var, K - 1), clamp(m.var, 0, M - 1)), 0.0f);
  a_pairs(t.var, kw.var, m.var) = gpu::pack_f16x2(a(8 * kw.var + t.var, m.var), a(8 * kw.var + t.var + 4, m.var));
  RDom in_block(0, B, "in_block");
  a_sum(g.var, m.var) = 0.0f;
  a_sum(g.var, m.var) += cast<float>(cast<float16_t>(a(g.var * B + in_block, m.var)));

  // Word kw's nibbles t and t + 4 (16 bits up) shifted to mantissa bits 6..9 of the pair (16 + u, 16 + u').
  Expr word = q.W.code_word(j.var, kw.var, p.var);
  Expr moved = select(t.var < 2, word << cast<uint32_t>(6 - 4 * t.var), word >> cast<uint32_t>(4 * t.var - 6));
  const Expr nibble_pair = Internal::UIntImm::make(UInt(32), 0x03C003C0u);
  const Expr sixteen = Internal::UIntImm::make(UInt(32), 0x4C004C00u);
  w_pairs(t.var, j.var, kw.var, p.var) = (moved & nibble_pair) | sixteen;

  // The block's words: 4 float16 dot products each, into float32.
  RDom r(0, BW, "r");
  Expr row = g.var * BW + r;
  dot(j.var, g.var, p.var, m.var) = 0.0f;
  Expr sum = dot(j.var, g.var, p.var, m.var);
  for (int pair = 0; pair < 4; ++pair)
    sum = gpu::dot2_f16(w_pairs(pair, j.var, row, p.var), a_pairs(pair, row, m.var), sum);
  dot(j.var, g.var, p.var, m.var) = sum;
  d.reduce_axes.push_back(ReduceAxis{"r", r, BW});

  RDom blocks(0, groups_count, "blocks");
  Expr wg = workload.format.k_group > 0 ? Expr(blocks) : Expr(0);
  Expr offset_term = cast<float>(16 + q.W.word_offset(j.var, wg, p.var)) * a_sum(blocks, m.var);
  acc(j.var, p.var, m.var) = 0.0f;
  acc(j.var, p.var, m.var) += (dot(j.var, blocks, p.var, m.var) - offset_term) * q.W.scale(j.var, wg, p.var);

  finish_blocked_def(q, output, acc, n, m, blocks, groups_count, in_block);
  d.stages = {{"a", a}, {"a_pairs", a_pairs}, {"a_sum", a_sum}, {"w_pairs", w_pairs}, {"dot", dot}, {"acc", acc}};
  set_arguments(q);
  return q;
}

}  // namespace tetra::dsl
