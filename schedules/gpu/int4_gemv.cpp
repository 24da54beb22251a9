#include "schedules/gpu/int4_gemv.h"

#include <algorithm>

#include "schedules/gpu/templates.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;
using namespace Halide;

namespace {
constexpr const char* kName = "gpu_int4_gemv";

// How the GEMVs load the weight, which each block reads once and no block reads again: through the caches
// ("cached"), or nontemporally ("streaming"), so that its lines do not evict what is read again (the
// activations, the next kernel's inputs). A hint whose worth depends on the GPU's caches: tuned, not assumed.
dsl::KnobDecl weight_loads_knob() {
  return {"weight_loads", dsl::string_values({"cached", "streaming"}), dsl::KnobValue(std::string("cached"))};
}

// Bytes of padding after each weight panel (Int4Layout::panel_pad_bytes). A GPU interleaves its memory
// channels every few hundred bytes; every block starts streaming its panel at the same moment, and panels
// of a multiple of 512 bytes would start them all on the same channels. 256 bytes moves each panel's
// start to the next channels, at a cost of 256 bytes a panel (0.2% at 4096 x 64 columns).
dsl::KnobDecl panel_pad_knob() { return {"panel_pad", dsl::int_values({0, 256}), dsl::KnobValue(int64_t(0))}; }

// The default: 256 bytes where the dense panels are a multiple of 512 bytes, else none.
int64_t default_panel_pad(const QMatMulWorkload& w, const dsl::Int4Layout& layout) {
  return dsl::dense_panel_bytes(layout, w.format, w.K) % 512 == 0 ? 256 : 0;
}

dsl::Int4Layout with_panel_pad(dsl::Int4Layout layout, const Schedule& s) {
  layout.panel_pad_bytes = int(s.get_int("panel_pad", 0));
  return layout;
}

void apply_weight_loads(QMatMulDef& q, const Schedule& s) {
  if (s.get_string("weight_loads", "cached") != "streaming") return;
  for (const ImageParam& p : q.W.params()) q.def.gpu.streamed_inputs.insert(p.name());
}
}  // namespace

KnobSpace gpu_int4_gemv_space(const QMatMulWorkload& w, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  KnobSpace s;
  s.template_name = kName;
  s.family = target.family;
  s.knobs = {
      // Columns per block (the panel width): whole waves.
      {"tile_n", dsl::int_values({wave, 2 * wave, 4 * wave})},
      {"unroll_k", dsl::int_values({1, 2, 4, 8})},
      // Threads per column: 1, or S threads each summing one S-th of k, reduced in workgroup memory.
      {"split_k", dsl::int_values(w.K >= 8192   ? std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64}
                                  : w.K >= 1024 ? std::vector<int64_t>{1, 2, 4, 8, 16}
                                  : w.K >= 64   ? std::vector<int64_t>{1, 2, 4, 8}
                                                : std::vector<int64_t>{1})},
      // Adjacent columns per thread (split-k only): each activation load serves thread_n weights.
      {"thread_n", dsl::int_values({1, 2, 4, 8}), dsl::KnobValue(int64_t(1))},
      // Weight bytes per load: a byte (2 weights), or a 32-bit word of 8 (the words layout; int4 only).
      {"load_bytes", dsl::int_values(w.format.is_float() ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 4}),
       dsl::KnobValue(int64_t(1))},
      weight_loads_knob(),
      panel_pad_knob(),
  };
  return s;
}

Schedule gpu_int4_gemv_default(const QMatMulWorkload& w, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  Schedule s;
  s.template_name = kName;
  // Split the reduction until the grid gives the arch's reference GPU (dsl/core/gpu_estimate.h) about 4
  // waves per SIMD, which hides memory latency, while each thread still sums at least 64 values of k.
  const int64_t simds = reference_simds(target);
  const int64_t blocks = (w.N + wave - 1) / wave * w.M;  // each one wave at split_k 1
  const int64_t most = w.K >= 1024 ? 16 : 8;
  int64_t split = 1;
  while (split < most && blocks * split < 4 * simds && w.K / (2 * split) >= 64) split *= 2;
  s.knobs = {{"tile_n", wave}, {"unroll_k", int64_t(4)}, {"split_k", split}};
  // Word loads: on an H200 (docs/gpu.md) faster than byte loads at every measured split (1.1x to 4.9x;
  // best against best, 1.4x), with fewer load instructions and no integer-to-float conversions.
  if (!w.format.is_float()) s.knobs["load_bytes"] = int64_t(4);
  s.knobs["panel_pad"] = default_panel_pad(w, gpu_int4_gemv_layout(s));
  return s;
}

Status gpu_int4_gemv_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec&) {
  // Threads per block: tile_n / thread_n x split_k, at most 1024 on every GPU tetra targets.
  if (s.get_int("tile_n") / s.get_int("thread_n", 1) * s.get_int("split_k") > 1024)
    return Failure{FailureKind::KnobConflict, "split_k", "tile_n / thread_n x split_k threads exceed 1024 per block"};
  if (s.get_int("thread_n", 1) > 1 && s.get_int("split_k") == 1)
    return Failure{FailureKind::KnobConflict, "thread_n", "columns per thread are scheduled with split_k"};
  if (s.get_int("tile_n") % s.get_int("thread_n", 1) != 0)
    return Failure{FailureKind::KnobConflict, "thread_n", "thread_n must divide tile_n"};
  if (w.int8_activations) return Failure{FailureKind::Unsupported, kName, "float32 activations only"};
  if (s.get_int("load_bytes", 1) == 4 && w.format.is_float())
    return Failure{FailureKind::KnobConflict, "load_bytes", "a float weight is loaded an element at a time"};
  return dsl::ok_status();
}

dsl::Int4Layout gpu_int4_gemv_layout(const Schedule& s) {
  const bool words = s.get_int("load_bytes", 1) == 4;
  dsl::Int4Layout layout{int(s.get_int("tile_n")), words ? 8 : 2};
  layout.words = words;
  return with_panel_pad(layout, s);
}

Status apply_gpu_int4_gemv(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const int P = int(s.get_int("tile_n")), U = int(s.get_int("unroll_k")), S = int(s.get_int("split_k"));
  const int C = int(s.get_int("thread_n", 1));
  // The k that one load serves, unrolled together so that they share it.
  const int L = s.get_int("load_bytes", 1) == 4 ? 8 : 2;
  apply_weight_loads(q, s);
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc");
  Var n = d.var("n"), m = d.var("m"), j = d.var("j"), p = d.var("p");
  RVar k = d.reduce("k").rvar();
  // A's rows are dense and the workload's K long (as every GPU job binds them): with K a multiple of 4,
  // a row starts at a multiple of 4, and a thread's adjacent k are 16-byte loads (dsl/gpu/vector_loads.h).
  q.A.dim(0).set_extent(int(q.workload.K)).dim(1).set_stride(int(q.workload.K));

  // Blocks over (panel, row); a thread per C adjacent columns. The last panel is guarded, so N needs no
  // padding.
  Var no("no"), ni("ni"), nt("nt"), nc("nc"), jt("jt"), jc("jc");
  out.split(n, no, ni, P, TailStrategy::GuardWithIf).reorder(ni, no, m).gpu_blocks(no, m);
  if (C == 1)
    out.gpu_threads(ni);
  else
    out.split(ni, nt, nc, C).reorder(nc, nt).gpu_threads(nt).unroll(nc);
  // acc(j, p, m): one panel of one row per block, each thread's values in its registers
  // (dsl/gpu/private_arrays.h).
  acc.compute_at(out, no).store_in(MemoryType::Register).bound_extent(j, P).bound_extent(p, 1).bound_extent(m, 1);
  if (C == 1)
    acc.gpu_threads(j);
  else
    acc.split(j, jt, jc, C).reorder(jc, jt).gpu_threads(jt).unroll(jc);
  RVar ko("ko"), ki("ki");
  if (S == 1) {
    if (L == 8) {  // a word's 8 k, unroll_k words at a time
      RVar kw("kw"), kl("kl");
      acc.update()
          .split(k, kw, kl, 8, TailStrategy::GuardWithIf)
          .split(kw, ko, ki, U, TailStrategy::GuardWithIf)
          .unroll(kl)
          .unroll(ki)
          .gpu_threads(j);
      return dsl::ok_status();
    }
    acc.update().split(k, ko, ki, U, TailStrategy::GuardWithIf).unroll(ki).gpu_threads(j);
    return dsl::ok_status();
  }
  // part(j, p, m, u): thread (j, u) sums the k-pairs (or k-words) u, u + S, u + 2S, ... of column j
  // (whole packed bytes or words), in workgroup memory (P x S floats). acc adds a column's S parts after Halide's
  // barrier. Interleaved, the part count is S exactly, a constant Halide needs no run-time check of.
  RVar kq("kq"), kp("kp"), ku("ku"), kio("kio"), kii("kii");
  Var u("u");
  acc.update().split(k, kq, kp, L, TailStrategy::GuardWithIf).split(kq, ko, ku, S, TailStrategy::GuardWithIf);
  Func part = acc.update().rfactor(ku, u);
  if (C == 1)
    acc.update().gpu_threads(j);
  else
    acc.update().split(j, jt, jc, C).gpu_threads(jt).unroll(jc);
  // Each thread sums its part in registers and writes it to workgroup memory once.
  Func shared = part.in(acc);
  shared.compute_at(out, no).bound_extent(j, P).bound_extent(p, 1).bound_extent(m, 1);
  part.update().split(ko, kio, kii, U, TailStrategy::GuardWithIf);
  if (C == 1) {
    shared.gpu_threads(j, u);
    part.compute_at(shared, j).store_in(MemoryType::Register);
    part.update().reorder(kp, kii, kio).unroll(kp).unroll(kii);
    return dsl::ok_status();
  }
  // Thread (jt, u) sums columns C jt .. C jt + C - 1: adjacent words of a row, and the columns innermost
  // so that each activation value is loaded once for all C.
  shared.split(j, jt, jc, C).reorder(jc, jt, u).gpu_threads(jt, u).unroll(jc);
  part.compute_at(shared, jt).store_in(MemoryType::Register).bound_extent(j, C);
  part.update().reorder(j, kp, kii, kio).unroll(j).unroll(kp).unroll(kii);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemv_traffic(const QMatMulWorkload& w, const Schedule& s) {
  // Each row of A is its own blocks, which read the whole weight and dequantize every value; A's row is
  // read by every block of its row (once from memory, the rest from L2, as a GEMM's column tiles), Y
  // written once.
  const int64_t P = s.get_int("tile_n"), S = s.get_int("split_k");
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  dsl::KernelTraffic t = gpu_qmatmul_reads(w, M, double((w.N + P - 1) / P));
  // A weight's operations: bytes take the nibble, convert it, subtract the zero point, scale and
  // multiply-add (5); words 3 (the nibble into a float's mantissa, the multiply-add: the offset is per
  // group, dsl/int4.cpp panel()); float16 scales 2 more, rounding each weight to float16.
  const bool words = s.get_int("load_bytes", 1) == 4;
  const double per_weight = (words ? 3 : 5) + (w.format.f16_scale ? 2 : 0);
  t.valu_ops = M * K * N * per_weight;
  t.lds_bytes = S > 1 ? M * N * double(S) * 4 * 2 : 0;  // the partial sums, written and read
  t.blocks = (w.N + P - 1) / P * w.M;
  t.threads_per_block = P / s.get_int("thread_n", 1) * S;
  return t;
}

}  // namespace tetra::schedules

// ---- a column's k across a wave's lanes: gpu_int4_gemv_wave ----

namespace tetra::schedules {

namespace {
constexpr const char* kWaveName = "gpu_int4_gemv_wave";

// The lanes' GEMVs' threads, once acc's update has been split so that `ku` is a lane's share of k.
struct LaneThreads {
  Func part;   // part(j, p, m, u): lane u's sums of its C columns, to be scheduled at lanes' u by the caller
  Var blocks;  // the output's loop over blocks of columns
};

// Blocks over (R columns, row). Thread (u, p) is lane u of the panel p of C columns: u is the fastest
// thread id, so a panel's lanes are adjacent lanes of one wave. acc and the output run on lane 0 (x extent
// 1), a thread's C columns unrolled, so that it reads the slots it wrote. lanes(j, p, m, u), each lane's
// sums in its registers, is marked for lower_lane_sums, which turns acc's reads of a column's lanes into
// one butterfly of exchanges.
LaneThreads schedule_lanes(dsl::ComputeDef& d, RVar ku, int R, int C) {
  Func out = d.output, acc = d.stage("acc");
  Var n = d.var("n"), m = d.var("m"), j = d.var("j"), p = d.var("p");
  Var no("no"), ni("ni"), nt("nt"), nc("nc"), nx("nx"), u("u"), px("px");
  out.split(n, no, ni, R, TailStrategy::GuardWithIf)
      .split(ni, nt, nc, C)
      .split(nt, nt, nx, 1)
      .reorder(nc, nx, nt, no, m)
      .gpu_blocks(no, m)
      .gpu_threads(nx, nt)
      .unroll(nc);
  acc.compute_at(out, no).store_in(MemoryType::Register).bound_extent(j, C).bound_extent(m, 1);
  acc.split(p, p, px, 1).reorder(j, px, p).gpu_threads(px, p).unroll(j);
  Func part = acc.update().rfactor(ku, u);
  acc.update().split(p, p, px, 1).reorder(ku, j, px, p).gpu_threads(px, p).unroll(j).unroll(ku);
  Func lanes = part.in(acc);
  d.gpu.lane_sums.insert(lanes.name());
  lanes.compute_at(out, no).store_in(MemoryType::Register).bound_extent(j, C).bound_extent(m, 1);
  lanes.reorder(j, u, p, m).gpu_threads(u, p).unroll(j);
  part.compute_at(lanes, u).store_in(MemoryType::Register).bound_extent(j, C);
  return {part, no};
}
}  // namespace

KnobSpace gpu_int4_gemv_wave_space(const QMatMulWorkload&, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  std::vector<int64_t> lanes;
  for (int64_t l : {8, 16, 32, 64})
    if (l <= wave) lanes.push_back(l);
  KnobSpace s;
  s.template_name = kWaveName;
  s.family = target.family;
  s.knobs = {
      // Lanes per column, the k split: at most a wave, so that the lanes' sums meet without workgroup memory.
      {"lanes", dsl::int_values(lanes)},
      // Columns per block.
      {"columns", dsl::int_values({1, 2, 4, 8, 16})},
      // Adjacent weight words a lane loads at once: 4, 8 or 16 bytes.
      {"vector", dsl::int_values({1, 2, 4})},
      // Loads of each lane unrolled together, in flight at once.
      {"unroll_k", dsl::int_values({1, 2, 4})},
      // Columns a lane sums (a wave's rows of the weight): each activation load serves thread_n weights.
      {"thread_n", dsl::int_values({1, 2, 4}), dsl::KnobValue(int64_t(1))},
      weight_loads_knob(),
  };
  return s;
}

Schedule gpu_int4_gemv_wave_default(const QMatMulWorkload&, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  // A wave per column (64 lanes on CDNA, 32 on RDNA), 16-byte loads, 16 columns a block: a block's waves
  // share its CU's reads of A from L2, which at 4 columns a block cost the static estimate at 1 x 4096 x
  // 4096 up to a quarter of the memory time (docs/design.md).
  Schedule s;
  s.template_name = kWaveName;
  s.knobs = {{"lanes", wave}, {"columns", int64_t(16)}, {"vector", int64_t(4)}, {"unroll_k", int64_t(2)}};
  return s;
}

namespace {
// The lanes' GEMVs' blocks: `lanes` of one wave a column, whole waves of columns / thread_n panels.
Status check_lanes_and_columns(const Schedule& s, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  if (s.get_int("columns") % s.get_int("thread_n", 1) != 0)
    return Failure{FailureKind::KnobConflict, "thread_n", "thread_n must divide columns"};
  const int64_t threads = s.get_int("lanes") * s.get_int("columns") / s.get_int("thread_n", 1);
  if (threads > 1024) return Failure{FailureKind::KnobConflict, "columns", "lanes x columns exceed 1024 threads"};
  // Every lane of a wave takes part in the exchanges: the block is whole waves.
  if (threads % wave != 0)
    return Failure{FailureKind::KnobConflict, "columns",
                   "lanes x columns / thread_n must be whole waves of " + std::to_string(wave) + " lanes"};
  if (s.get_int("lanes") > wave)
    return Failure{FailureKind::KnobConflict, "lanes", "a column's lanes must be in one wave"};
  return dsl::ok_status();
}
}  // namespace

Status gpu_int4_gemv_wave_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  if (Status st = check_lanes_and_columns(s, target); !st) return st;
  if (w.int8_activations) return Failure{FailureKind::Unsupported, kWaveName, "float32 activations only"};
  if (w.format.is_float()) return Failure{FailureKind::Unsupported, kWaveName, "int4 weights only (packed words)"};
  return dsl::ok_status();
}

dsl::Int4Layout gpu_int4_gemv_wave_layout(const Schedule& s) {
  // Panels of thread_n columns: a panel's words at one k adjacent, its k contiguous.
  dsl::Int4Layout layout{int(s.get_int("thread_n", 1)), 8};
  layout.words = true;
  return layout;
}

Status apply_gpu_int4_gemv_wave(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const int S = int(s.get_int("lanes")), R = int(s.get_int("columns")), V = int(s.get_int("vector"));
  const int U = int(s.get_int("unroll_k")), C = int(s.get_int("thread_n", 1));
  apply_weight_loads(q, s);
  dsl::ComputeDef& d = q.def;
  Func acc = d.stage("acc");
  Var j = d.var("j");
  RVar k = d.reduce("k").rvar();
  q.A.dim(0).set_extent(int(q.workload.K)).dim(1).set_stride(int(q.workload.K));
  // A panel's rows are the workload's ceil(K / 8) words: where C x K / 8 is a multiple of 4, every panel
  // starts 16-byte aligned, and a lane's C x `vector` adjacent words are 16-byte loads
  // (dsl/gpu/vector_loads.h).
  for (ImageParam w : q.W.params())
    if (w.dimensions() == 3 && w.type() == UInt(32)) w.dim(1).set_extent(int((q.workload.K + 7) / 8));

  // k = ((ko S + u) V + v) 8 + l: lane u's word, V adjacent words, a word's 8 values.
  RVar kw("kw"), kl("kl"), kq("kq"), kv("kv"), ko("ko"), ku("ku"), koo("koo"), koi("koi");
  acc.update()
      .split(k, kw, kl, 8, TailStrategy::GuardWithIf)
      .split(kw, kq, kv, V, TailStrategy::GuardWithIf)
      .split(kq, ko, ku, S, TailStrategy::GuardWithIf);
  Func part = schedule_lanes(d, ku, R, C).part;
  // The panel's C columns innermost: each activation value a lane loads serves C weights, and the C x V
  // words a lane loads at a k are adjacent.
  part.update()
      .split(ko, koo, koi, U, TailStrategy::GuardWithIf)
      .reorder(j, kl, kv, koi, koo)
      .unroll(j)
      .unroll(kl)
      .unroll(kv)
      .unroll(koi);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemv_wave_traffic(const QMatMulWorkload& w, const Schedule& s) {
  // As the float32 GEMV with word loads: the weight once per row of A, A's row by each block, 3
  // operations a weight; no workgroup memory (the lanes exchange their sums in registers).
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  dsl::KernelTraffic t = gpu_qmatmul_reads(w, M, double((w.N + s.get_int("columns") - 1) / s.get_int("columns")));
  t.valu_ops = M * K * N * (w.format.f16_scale ? 5 : 3);
  t.blocks = (w.N + s.get_int("columns") - 1) / s.get_int("columns") * w.M;
  t.threads_per_block = s.get_int("lanes") * s.get_int("columns") / s.get_int("thread_n", 1);
  return t;
}

}  // namespace tetra::schedules

// ---- int8 activations: gpu_int4_gemv_a8 ----

namespace tetra::schedules {

namespace {
constexpr const char* kA8Name = "gpu_int4_gemv_a8";
constexpr const char* kH2Name = "gpu_int4_gemv_h2";

// What the int8 and float16 GEMVs share: a block of T x S threads (T = tile_n / thread_n) per panel and
// row, which first stages its row of A per k-block in workgroup memory, then sums k-blocks by column.

// Stage `f` (over `x`; with `lanes`, a pure var each thread unrolls) in workgroup memory for the block, all
// its threads sharing the work; with `in_block`, its update too.
void stage_for_block(Func f, Var x, int T, int S, Func out, Var no, const Var* lanes, const RVar* in_block) {
  Var xa("xa"), xb("xb"), xo("xo");
  f.compute_at(out, no).store_in(MemoryType::GPUShared);
  f.split(x, xo, xa, T * S, TailStrategy::GuardWithIf).split(xa, xb, xa, T).reorder(xa, xb, xo).gpu_threads(xa, xb);
  if (lanes) f.reorder(*lanes, xa, xb, xo).unroll(*lanes);
  if (in_block)
    f.update()
        .split(x, xo, xa, T * S, TailStrategy::GuardWithIf)
        .split(xa, xb, xa, T)
        .reorder(*in_block, xa, xb, xo)
        .gpu_threads(xa, xb);
}

// Blocks over (panel, row); acc(j, p, m) the panel's columns, C a thread (dsl/gpu/private_arrays.h).
// Thread (jt, u) sums the k-blocks u, u + S, ... of its C columns in registers (part), then writes them
// to workgroup memory; after Halide's barrier, acc adds a column's S parts. A k-block's "dot" of the
// thread's C columns is in registers, its words unrolled. Returns the blocks' loop var.
Var sum_blocks_by_columns(const dsl::ComputeDef& d, int P, int S, int C) {
  Func out = d.output, acc = d.stage("acc"), dot = d.stage("dot");
  Var n = d.var("n"), m = d.var("m"), j = d.var("j"), p = d.var("p");
  RVar blocks = d.reduce("k").rvar(), r = d.reduce("r").rvar();
  Var no("no"), ni("ni"), nt("nt"), nc("nc"), jt("jt"), jc("jc"), u("u");
  out.split(n, no, ni, P, TailStrategy::GuardWithIf).reorder(ni, no, m).gpu_blocks(no, m);
  out.split(ni, nt, nc, C).reorder(nc, nt).gpu_threads(nt).unroll(nc);
  acc.compute_at(out, no).store_in(MemoryType::Register).bound_extent(j, P).bound_extent(p, 1).bound_extent(m, 1);
  acc.split(j, jt, jc, C).reorder(jc, jt).gpu_threads(jt).unroll(jc);
  RVar ko("ko"), ku("ku");
  acc.update().split(blocks, ko, ku, S, TailStrategy::GuardWithIf);
  Func part = acc.update().rfactor(ku, u);
  acc.update().split(j, jt, jc, C).gpu_threads(jt).unroll(jc);
  Func shared = part.in(acc);
  shared.compute_at(out, no).bound_extent(j, P).bound_extent(p, 1).bound_extent(m, 1);
  shared.split(j, jt, jc, C).reorder(jc, jt, u).gpu_threads(jt, u).unroll(jc);
  part.compute_at(shared, jt).store_in(MemoryType::Register).bound_extent(j, C);
  part.update().reorder(j, ko).unroll(j);
  dot.compute_at(part, ko).store_in(MemoryType::Register).unroll(j);
  dot.update().reorder(j, r).unroll(j).unroll(r);
  return no;
}

// Each block quantizes its row of A into workgroup memory, its fast x slow threads sharing the work: the
// k-blocks' maxima, then the packed int8 words and the blocks' sums (a_q recomputed inline, from a_max).
void stage_int8_row(const dsl::ComputeDef& d, int fast, int slow, Var blocks) {
  const RVar in_block = d.reduce("in_block").rvar();
  const Var h = d.var("h");
  stage_for_block(d.stage("a_max"), d.var("g"), fast, slow, d.output, blocks, nullptr, &in_block);
  stage_for_block(d.stage("a_words"), d.var("kq"), fast, slow, d.output, blocks, &h, nullptr);
  stage_for_block(d.stage("a_sum"), d.var("g"), fast, slow, d.output, blocks, nullptr, &in_block);
}

// A k-block GEMV's operations on a word of 8 weights, and on a k-block of a column.
struct GemvOps {
  double a_word, a_block;
};
// int8 activations: two 4-way dot products a word, and a multiply-add per k-block and column.
constexpr GemvOps kInt8GemvOps{4, 3};
}  // namespace

KnobSpace gpu_int4_gemv_a8_space(const QMatMulWorkload& w, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  std::vector<int64_t> splits;
  for (int64_t s : {1, 2, 4, 8, 16, 32})
    if (s == 1 || w.K / w.activation_block() >= s) splits.push_back(s);
  KnobSpace s;
  s.template_name = kA8Name;
  s.family = target.family;
  s.knobs = {
      {"tile_n", dsl::int_values({wave, 2 * wave, 4 * wave})},
      // Threads per column: each sums every split_k-th k-block, reduced in workgroup memory.
      {"split_k", dsl::int_values(splits)},
      // Adjacent columns per thread: each packed activation word serves thread_n weight words.
      {"thread_n", dsl::int_values({1, 2, 4})},
      // Fixed by the workload (the k-block A is quantized in); recorded so the layout follows from the
      // schedule alone.
      {"block", dsl::int_values({w.activation_block()})},
      weight_loads_knob(),
      panel_pad_knob(),
  };
  return s;
}

Schedule gpu_int4_gemv_a8_default(const QMatMulWorkload& w, const TargetSpec& target) {
  // As the float32 GEMV's default: split the k-blocks until the reference GPU has about 4 waves per SIMD.
  Schedule f = gpu_int4_gemv_default(w, target);
  const int64_t blocks = w.K / w.activation_block();
  int64_t split = 1;
  while (split < f.get_int("split_k") && blocks / (2 * split) >= 2) split *= 2;
  Schedule s;
  s.template_name = kA8Name;
  s.knobs = {
      {"tile_n", f.get_int("tile_n")}, {"split_k", split}, {"thread_n", int64_t(1)}, {"block", w.activation_block()}};
  s.knobs["panel_pad"] = default_panel_pad(w, gpu_int4_gemv_a8_layout(s));
  return s;
}

Status gpu_int4_gemv_a8_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec&) {
  if (!w.int8_activations) return Failure{FailureKind::Unsupported, kA8Name, "int8 activations only"};
  if (s.get_int("tile_n") / s.get_int("thread_n") * s.get_int("split_k") > 1024)
    return Failure{FailureKind::KnobConflict, "split_k", "tile_n / thread_n x split_k threads exceed 1024 per block"};
  if (s.get_int("tile_n") % s.get_int("thread_n") != 0)
    return Failure{FailureKind::KnobConflict, "thread_n", "thread_n must divide tile_n"};
  return dsl::ok_status();
}

dsl::Int4Layout gpu_int4_gemv_a8_layout(const Schedule& s) {
  dsl::Int4Layout layout{int(s.get_int("tile_n")), int(s.get_int("block")), /*vnni=*/true};
  layout.words = true;  // a thread loads a column's 8 codes at once
  return with_panel_pad(layout, s);
}

Status apply_gpu_int4_gemv_a8(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const int P = int(s.get_int("tile_n")), S = int(s.get_int("split_k")), C = int(s.get_int("thread_n"));
  const int T = P / C;  // threads per column group; the block is T x S threads
  apply_weight_loads(q, s);
  const dsl::ComputeDef& d = q.def;
  // K is the workload's, so the block's staged activations have constant sizes.
  q.A.dim(0).set_extent(int(q.workload.K)).dim(1).set_stride(int(q.workload.K));
  stage_int8_row(d, T, S, sum_blocks_by_columns(d, P, S, C));
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemv_a8_traffic(const QMatMulWorkload& w, const Schedule& s) {
  // The weight once per row of A; A's row read and quantized by every block of its row; kInt8GemvOps.
  const int64_t P = s.get_int("tile_n"), S = s.get_int("split_k");
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  dsl::KernelTraffic t = gpu_qmatmul_reads(w, M, double((w.N + P - 1) / P));
  t.valu_ops = M * N * K / 8 * kInt8GemvOps.a_word + M * N * K / double(w.activation_block()) * kInt8GemvOps.a_block;
  t.lds_bytes = M * N * double(S) * 4 * 2 + M * double((w.N + P - 1) / P) * K * 2;
  t.blocks = (w.N + P - 1) / P * w.M;
  t.threads_per_block = P / s.get_int("thread_n") * S;
  return t;
}

}  // namespace tetra::schedules

// ---- float16 activations: gpu_int4_gemv_h2 ----

namespace tetra::schedules {

namespace {
// Workgroup memory of the float16 GEMV: A's float16 pairs (2 bytes a k, K padded to whole blocks), the
// blocks' sums, and the block's P x S partial sums.
int64_t h2_staged_bytes(const QMatMulWorkload& w, int64_t partial_sums) {
  const int64_t B = w.activation_block(), blocks = (w.K + B - 1) / B;
  return blocks * B * 2 + blocks * 4 + partial_sums * 4;
}

// Each block rounds its row of A to float16 pairs in workgroup memory, with the k-blocks' sums, its fast x
// slow threads sharing the work.
void stage_f16_row(const dsl::ComputeDef& d, int fast, int slow, Var blocks) {
  const RVar in_block = d.reduce("in_block").rvar();
  const Var t = d.var("t");
  stage_for_block(d.stage("a_pairs"), d.var("kw"), fast, slow, d.output, blocks, &t, nullptr);
  stage_for_block(d.stage("a_sum"), d.var("g"), fast, slow, d.output, blocks, nullptr, &in_block);
}

// float16 activations: a word's 8 weights in 4 float16 dot products, each after a shift, an and and an or
// of the code pair, and one XOR of the word for two's complement: 17 operations a word, against 3 a weight
// in the float32 GEMV. (gfx10 and later fuse the and-or into one, 13 a word; gfx9's VOP3 takes no literal
// constants, and its code objects show the 17.) Then a multiply-add and the k-block sum's term.
constexpr GemvOps kF16GemvOps{17, 2};
}  // namespace

bool gpu_int4_gemv_h2_applies(const QMatMulWorkload& w) {
  // Any knob point's partial sums fit in 1024 threads' worth.
  return w.f16_activations && w.M <= 8 && dsl::f16_activations_supported(w).ok() &&
         check_staged_bytes(h2_staged_bytes(w, 1024), "K", "A's row").ok();
}

KnobSpace gpu_int4_gemv_h2_space(const QMatMulWorkload& w, const TargetSpec& target) {
  KnobSpace s = gpu_int4_gemv_a8_space(w, target);  // the same tiles over the same k-blocks
  s.template_name = kH2Name;
  return s;
}

Schedule gpu_int4_gemv_h2_default(const QMatMulWorkload& w, const TargetSpec& target) {
  Schedule s = gpu_int4_gemv_a8_default(w, target);
  s.template_name = kH2Name;
  return s;
}

Status gpu_int4_gemv_h2_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec&) {
  if (!w.f16_activations) return Failure{FailureKind::Unsupported, kH2Name, "float16 activations only"};
  if (Status st = dsl::f16_activations_supported(w); !st) return st;
  if (s.get_int("tile_n") / s.get_int("thread_n") * s.get_int("split_k") > 1024)
    return Failure{FailureKind::KnobConflict, "split_k", "tile_n / thread_n x split_k threads exceed 1024 per block"};
  if (s.get_int("tile_n") % s.get_int("thread_n") != 0)
    return Failure{FailureKind::KnobConflict, "thread_n", "thread_n must divide tile_n"};
  return check_staged_bytes(h2_staged_bytes(w, s.get_int("tile_n") * s.get_int("split_k")), "split_k",
                            "A's row in float16 with the partial sums");
}

dsl::Int4Layout gpu_int4_gemv_h2_layout(const Schedule& s) {
  dsl::Int4Layout layout{int(s.get_int("tile_n")), int(s.get_int("block"))};
  layout.words = true;  // a thread loads a column's 8 codes at once
  return with_panel_pad(layout, s);
}

Status apply_gpu_int4_gemv_h2(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const int P = int(s.get_int("tile_n")), S = int(s.get_int("split_k")), C = int(s.get_int("thread_n"));
  const int T = P / C;
  apply_weight_loads(q, s);
  const dsl::ComputeDef& d = q.def;
  q.A.dim(0).set_extent(int(q.workload.K)).dim(1).set_stride(int(q.workload.K));
  stage_f16_row(d, T, S, sum_blocks_by_columns(d, P, S, C));
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemv_h2_traffic(const QMatMulWorkload& w, const Schedule& s) {
  // As the int8 GEMV, with kF16GemvOps.
  dsl::KernelTraffic t = gpu_int4_gemv_a8_traffic(w, s);
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  t.valu_ops = M * N * K / 8 * kF16GemvOps.a_word + M * N * K / double(w.activation_block()) * kF16GemvOps.a_block;
  return t;
}

}  // namespace tetra::schedules

// ---- a column's k-blocks across a wave's lanes: gpu_int4_gemv_h2_wave (float16 activations) and
// gpu_int4_gemv_a8_wave (int8) ----

namespace tetra::schedules {

namespace {
constexpr const char* kH2WaveName = "gpu_int4_gemv_h2_wave";
constexpr const char* kA8WaveName = "gpu_int4_gemv_a8_wave";

// The float32 lanes' GEMV's knobs, less `vector` and `unroll_k`: a lane loads a k-block's words of its
// columns at once (4 words, 16 bytes, a column at blocks of 32).
KnobSpace kblock_lanes_space(const QMatMulWorkload& w, const TargetSpec& target, const char* name) {
  KnobSpace s = gpu_int4_gemv_wave_space(w, target);
  s.template_name = name;
  s.knobs.erase(std::remove_if(s.knobs.begin(), s.knobs.end(),
                               [](const dsl::KnobDecl& k) { return k.name == "vector" || k.name == "unroll_k"; }),
                s.knobs.end());
  s.knobs.push_back({"block", dsl::int_values({w.activation_block()})});
  return s;
}

// A wave a column, as the float32 lanes' GEMV, and 16 columns a block, so that each block's staging of A
// serves 16 columns. By the static estimate at 1 x 4096 x 4096 (docs/design.md), the best of lanes (16, 32,
// wave) x columns (4, 8, 16) x thread_n (1, 2, 4) for float16 activations on gfx90a, gfx942, gfx1100 and
// gfx1201; on gfx942 2.3 us, against 8.8 for the split-k default, whose 64 blocks fill 64 of MI300X's 304
// CUs.
Schedule kblock_lanes_default(const QMatMulWorkload& w, const TargetSpec& target, const char* name) {
  Schedule s;
  s.template_name = name;
  s.knobs = {
      {"lanes", wave_of(target)}, {"columns", int64_t(16)}, {"thread_n", int64_t(1)}, {"block", w.activation_block()}};
  return s;
}

// The threads of both: lane u sums the k-blocks u, u + lanes, ... of its thread_n columns, a k-block's dot
// products in registers; the weight in panels of thread_n columns of K's whole blocks of words. Returns the
// blocks' loop var, where the caller stages A's row.
Var schedule_kblock_lanes(QMatMulDef& q, const Schedule& s) {
  const int S = int(s.get_int("lanes")), R = int(s.get_int("columns")), C = int(s.get_int("thread_n", 1));
  const int64_t B = q.workload.activation_block();
  apply_weight_loads(q, s);
  dsl::ComputeDef& d = q.def;
  Func acc = d.stage("acc"), dot = d.stage("dot");
  Var j = d.var("j");
  RVar blocks = d.reduce("k").rvar(), r = d.reduce("r").rvar();
  q.A.dim(0).set_extent(int(q.workload.K)).dim(1).set_stride(int(q.workload.K));
  // A panel's rows are K's whole blocks of words: every panel starts 16-byte aligned, and a lane's words of
  // a k-block are 16-byte loads (dsl/gpu/vector_loads.h).
  for (ImageParam w : q.W.params())
    if (w.dimensions() == 3 && w.type() == UInt(32)) w.dim(1).set_extent(int((q.workload.K + B - 1) / B * B / 8));

  RVar ko("ko"), ku("ku");
  acc.update().split(blocks, ko, ku, S, TailStrategy::GuardWithIf);
  LaneThreads threads = schedule_lanes(d, ku, R, C);
  threads.part.update().reorder(j, ko).unroll(j);
  dot.compute_at(threads.part, ko).store_in(MemoryType::Register).unroll(j);
  dot.update().reorder(j, r).unroll(j).unroll(r);
  return threads.blocks;
}

// The traffic of both, given a k's bytes of A staged and the operations: in workgroup memory, each block's
// staged row of A, written once and read by each of its lanes' panels, and no partial sums (the lanes
// exchange them in registers).
dsl::KernelTraffic kblock_lanes_traffic(const QMatMulWorkload& w, const Schedule& s, double a_bytes, GemvOps ops) {
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  const int64_t R = s.get_int("columns"), C = s.get_int("thread_n", 1);
  const double blocks = double((w.N + R - 1) / R) * M;
  dsl::KernelTraffic t = gpu_qmatmul_reads(w, M, blocks / M);
  t.valu_ops = M * N * K / 8 * ops.a_word + M * N * K / double(w.activation_block()) * ops.a_block;
  t.lds_bytes = (blocks * K + M * double((w.N + C - 1) / C) * K) * a_bytes;
  t.blocks = int64_t(blocks);
  t.threads_per_block = s.get_int("lanes") * R / C;
  return t;
}
}  // namespace

KnobSpace gpu_int4_gemv_h2_wave_space(const QMatMulWorkload& w, const TargetSpec& target) {
  return kblock_lanes_space(w, target, kH2WaveName);
}

Schedule gpu_int4_gemv_h2_wave_default(const QMatMulWorkload& w, const TargetSpec& target) {
  return kblock_lanes_default(w, target, kH2WaveName);
}

Status gpu_int4_gemv_h2_wave_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  if (!w.f16_activations) return Failure{FailureKind::Unsupported, kH2WaveName, "float16 activations only"};
  if (Status st = dsl::f16_activations_supported(w); !st) return st;
  if (Status st = check_lanes_and_columns(s, target); !st) return st;
  return check_staged_bytes(h2_staged_bytes(w, 0), "K", "A's row in float16");
}

dsl::Int4Layout gpu_int4_gemv_h2_wave_layout(const Schedule& s) {
  // Panels of thread_n columns: a lane's k-block of its columns is thread_n x block / 8 adjacent words.
  dsl::Int4Layout layout{int(s.get_int("thread_n", 1)), int(s.get_int("block"))};
  layout.words = true;
  return layout;
}

Status apply_gpu_int4_gemv_h2_wave(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const Var blocks = schedule_kblock_lanes(q, s);
  stage_f16_row(q.def, int(s.get_int("lanes")), int(s.get_int("columns") / s.get_int("thread_n", 1)), blocks);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemv_h2_wave_traffic(const QMatMulWorkload& w, const Schedule& s) {
  return kblock_lanes_traffic(w, s, 2, kF16GemvOps);  // A staged as float16
}

KnobSpace gpu_int4_gemv_a8_wave_space(const QMatMulWorkload& w, const TargetSpec& target) {
  return kblock_lanes_space(w, target, kA8WaveName);
}

Schedule gpu_int4_gemv_a8_wave_default(const QMatMulWorkload& w, const TargetSpec& target) {
  return kblock_lanes_default(w, target, kA8WaveName);
}

Status gpu_int4_gemv_a8_wave_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  if (!w.int8_activations) return Failure{FailureKind::Unsupported, kA8WaveName, "int8 activations only"};
  return check_lanes_and_columns(s, target);
}

dsl::Int4Layout gpu_int4_gemv_a8_wave_layout(const Schedule& s) {
  // Panels of thread_n columns of the int8 dot products' words: a lane's k-block of its columns is
  // thread_n x block / 8 adjacent words.
  dsl::Int4Layout layout{int(s.get_int("thread_n", 1)), int(s.get_int("block")), /*vnni=*/true};
  layout.words = true;
  return layout;
}

Status apply_gpu_int4_gemv_a8_wave(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const Var blocks = schedule_kblock_lanes(q, s);
  stage_int8_row(q.def, int(s.get_int("lanes")), int(s.get_int("columns") / s.get_int("thread_n", 1)), blocks);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemv_a8_wave_traffic(const QMatMulWorkload& w, const Schedule& s) {
  return kblock_lanes_traffic(w, s, 1, kInt8GemvOps);  // A staged as int8
}

}  // namespace tetra::schedules
