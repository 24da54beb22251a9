#include "schedules/gpu/int4_gemm.h"

#include <functional>
#include <optional>

#include "dsl/core/gpu_estimate.h"
#include "schedules/gpu/templates.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;
using namespace Halide;

namespace {
constexpr const char* kName = "gpu_int4_gemm";

// Both GEMMs' block and register tiles: columns per block (the weight's panel width; whole or half
// waves), rows per block, and each thread's tile.
std::vector<dsl::KnobDecl> tile_knobs(const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  return {{"tile_n", dsl::int_values({wave / 2, wave, 2 * wave})},
          {"tile_m", dsl::int_values({8, 16, 32, 64})},
          {"thread_n", dsl::int_values({1, 2, 4})},
          {"thread_m", dsl::int_values({1, 2, 4, 8})}};
}

// Threads per output tile, each summing one split_k-th of k (of each chunk), the block's partial tiles
// then added in workgroup memory (factor_split_k): more waves for the same tiles, where the tiles alone
// leave a GPU's SIMDs idle.
dsl::KnobDecl split_k_knob() { return {"split_k", dsl::int_values({1, 2, 4}), dsl::KnobValue(int64_t(1))}; }

// Each chunk staged in the other half of twice the workgroup memory while the block computes on this one
// (dsl/gpu/double_buffer.h): one barrier a chunk, not two, and the next chunk's loads in flight during this
// chunk's arithmetic.
dsl::KnobDecl double_buffer_knob() { return {"double_buffer", dsl::int_values({0, 1}), dsl::KnobValue(int64_t(0))}; }

// Workgroup memory a block takes: `bytes` once, or twice when double-buffered (the kernel's workgroup
// memory is one allocation, doubled whole).
int64_t buffered_bytes(const Schedule& s, int64_t bytes) { return s.get_int("double_buffer", 0) ? 2 * bytes : bytes; }

// Double-buffers the chunk loop "kc" of every GEMM template when the schedule asks to.
void apply_double_buffer(QMatMulDef& q, const Schedule& s) {
  if (s.get_int("double_buffer", 0)) q.def.gpu.double_buffered.insert("kc");
}

// Double buffering needs a next chunk: `units` of k (values, or k-blocks) in chunks of tile_k.
Status check_double_buffer(const Schedule& s, int64_t units) {
  if (s.get_int("double_buffer", 0) && units <= s.get_int("tile_k"))
    return Failure{FailureKind::KnobConflict, "double_buffer", "k is one chunk: there is no next chunk to stage"};
  return dsl::ok_status();
}

// Workgroup memory of the block's partial tiles (factor_split_k): tile_n x tile_m floats per split_k.
int64_t partial_tile_bytes(const Schedule& s) {
  const int64_t S = s.get_int("split_k", 1);
  return S > 1 ? s.get_int("tile_n") * s.get_int("tile_m") * S * 4 : 0;
}

// `s` split `split` ways, where that divides its chunk of k-blocks and workgroup memory holds the staged chunk
// (`staged_bytes` of a schedule) and the partial tiles too; nullopt otherwise. The int8 and float16 GEMMs'
// defaults.
std::optional<Schedule> split_chunks(const Schedule& s, int64_t split,
                                     const std::function<int64_t(const Schedule&)>& staged_bytes) {
  Schedule split_s = s;
  split_s.knobs["split_k"] = split;
  if (split > 1 && s.get_int("tile_k") % split == 0 &&
      check_staged_bytes(staged_bytes(split_s) + partial_tile_bytes(split_s), "", "").ok())
    return split_s;
  return std::nullopt;
}

// Bytes of the packed weight per value: two codes a byte, or the float weight's own element.
double code_bytes(const dsl::Int4Format& f) { return f.is_float() ? f.float_bits / 8.0 : 0.5; }

// Words of each of A's rows staged in workgroup memory: a word more than tile_k, since the thread rows of a
// wave read rows thread_m apart at the same k, which with tile_k words a row would all be in one bank.
int64_t staged_a_row_words(const Schedule& s) { return s.get_int("tile_k") + 1; }

// Workgroup memory per staged weight value under shared_stage: the packed codes ("aw"), a float32
// ("aw_dequant"), or none.
double staged_weight_bytes(const std::string& stage, const dsl::Int4Format& f) {
  return stage == "aw" ? code_bytes(f) : stage == "aw_dequant" ? 4.0 : 0.0;
}

// What split_k adds to a GEMM's traffic: split_k times the threads a block, and each output's split_k
// partial sums written to workgroup memory, read back and added.
void add_split_k(dsl::KernelTraffic& t, const QMatMulWorkload& w, const Schedule& s) {
  const int64_t S = s.get_int("split_k", 1);
  if (S == 1) return;
  const double partials = double(w.M) * double(w.N) * double(S);
  t.threads_per_block *= S;
  t.lds_bytes += partials * 4 * 2;
  t.valu_ops += partials;
}

// The block's `loaders` threads that each load the same `bytes` themselves, rather than from a copy the block
// staged, load them again after the first, in each of `tiles` blocks: the CU's vector cache serves the repeats.
void add_repeated_loads(dsl::KernelTraffic& t, double tiles, double loaders, double bytes) {
  t.repeated_loads += tiles * (loaders - 1) * bytes;
}

// Each of a block's thread rows loads the block's columns of the weight itself.
void add_thread_row_weight_loads(dsl::KernelTraffic& t, const QMatMulWorkload& w, const Schedule& s) {
  const int64_t TM = s.get_int("tile_m");
  add_repeated_loads(t, double((w.M + TM - 1) / TM), double(TM / s.get_int("thread_m")), gpu_weight_bytes(w));
}
}  // namespace

KnobSpace gpu_int4_gemm_space(const QMatMulWorkload&, const TargetSpec& target) {
  KnobSpace s;
  s.template_name = kName;
  s.family = target.family;
  s.knobs = tile_knobs(target);
  s.knobs.insert(s.knobs.end(),
                 {
                     {"unroll_k", dsl::int_values({1, 2, 4})},
                     // A's rows of the block in workgroup memory, tile_k values of k at a time ("a"), or read directly.
                     // "aw": the block's packed weight too, tile_k values of k of its tile_n columns, which each
                     // thread row of the block then reads from there instead of through the caches.
                     // "aw_dequant": that weight chunk dequantized to float32 by the block's threads together,
                     // so that it is dequantized once a block instead of once a thread row.
                     {"shared_stage", dsl::string_values({"none", "a", "aw", "aw_dequant"})},
                     {"tile_k", dsl::int_values({16, 32, 64})},
                     split_k_knob(),
                     double_buffer_knob(),
                 });
  return s;
}

namespace {
// The default tiles' rows: 32 (16 when M is small).
int64_t default_tile_m(const QMatMulWorkload& w) { return w.M >= 32 ? 32 : 16; }

// The waves of the default tiles at `thread_n` columns a thread, unsplit: (wave / thread_n) x 8 threads a tile.
int64_t default_waves(const QMatMulWorkload& w, const TargetSpec& target, int64_t thread_n) {
  const int64_t wave = wave_of(target), tile_m = default_tile_m(w);
  return (w.N + wave - 1) / wave * ((w.M + tile_m - 1) / tile_m) * (8 / thread_n);
}

// The tiles every GEMM's default starts from: a wave of columns by 32 rows (16 when M is small), 8 thread
// rows of tile_m / 8, `thread_n` columns a thread. Two threads a tile (split_k 2), each summing half of
// every chunk, where the tiles would give the arch's reference GPU less than a wave per SIMD: the 128-row
// prefill on MI300X at 4 x 4 outputs a thread has 512 waves for 1216 SIMDs, and by the static estimate
// runs in 70 us instead of 140.
Schedule default_tiles(const QMatMulWorkload& w, const TargetSpec& target, int64_t thread_n) {
  const int64_t tile_m = default_tile_m(w);
  Schedule s;
  s.knobs = {{"tile_n", wave_of(target)}, {"tile_m", tile_m}, {"thread_n", thread_n}, {"thread_m", tile_m / 8}};
  if (default_waves(w, target, thread_n) < reference_simds(target)) s.knobs["split_k"] = int64_t(2);
  return s;
}

// Half the columns a block, twice the blocks, while the blocks crowd the reference GPU's CUs (crowds_cus;
// split_k's threads count too). The float16 GEMM's 128-row prefill on MI300X, 256 blocks of 8 waves for
// 304 CUs: 49.9 -> 42.8 us by the static estimate.
Schedule spread_over_cus(Schedule s, const QMatMulWorkload& w, const TargetSpec& target) {
  auto tiles = [](int64_t extent, int64_t tile) { return (extent + tile - 1) / tile; };
  auto crowded = [&] {
    const int64_t tile_n = s.get_int("tile_n"), tile_m = s.get_int("tile_m");
    const int64_t threads = tile_n / s.get_int("thread_n") * (tile_m / s.get_int("thread_m")) * s.get_int("split_k", 1);
    return crowds_cus(target, tiles(w.N, tile_n) * tiles(w.M, tile_m), threads);
  };
  while (crowded() && s.get_int("tile_n") >= 16 * s.get_int("thread_n")) s.knobs["tile_n"] = s.get_int("tile_n") / 2;
  return s;
}
}  // namespace

Schedule gpu_int4_gemm_default(const QMatMulWorkload& w, const TargetSpec& target) {
  // From 4 row tiles of 32 on, the block's weight chunk is dequantized once into workgroup memory, and a
  // thread takes 4 x 4 outputs (2 x 4 would make it LDS-bound): by the static estimate the 128-row
  // prefill runs in 70 us instead of 105 on MI300X, 157 instead of 280 on the RX 7900 XTX. With fewer
  // rows each thread dequantizes its 2 columns for its rows, which keeps more waves for the fewer tiles.
  // A is staged 32 values of k at a time.
  const bool dequantize_once = w.M >= 128;
  Schedule s = default_tiles(w, target, dequantize_once ? 4 : 2);
  s.template_name = kName;
  s.knobs["unroll_k"] = int64_t(2);
  s.knobs["shared_stage"] = std::string(dequantize_once ? "aw_dequant" : "a");
  s.knobs["tile_k"] = int64_t(32);
  return s;
}

namespace {
// The block and thread tiles of both GEMMs: whole thread tiles, at most 1024 threads a block.
Status check_tiles(const Schedule& s) {
  const int64_t tile_n = s.get_int("tile_n"), tile_m = s.get_int("tile_m");
  const int64_t thread_n = s.get_int("thread_n"), thread_m = s.get_int("thread_m");
  if (tile_n % thread_n) return Failure{FailureKind::KnobConflict, "thread_n", "tile_n must be a multiple of thread_n"};
  if (tile_m % thread_m) return Failure{FailureKind::KnobConflict, "thread_m", "tile_m must be a multiple of thread_m"};
  if ((tile_n / thread_n) * (tile_m / thread_m) * s.get_int("split_k", 1) > 1024)
    return Failure{FailureKind::KnobConflict, "thread_n", "more than 1024 threads per block"};
  return dsl::ok_status();
}
}  // namespace

Status gpu_int4_gemm_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec&) {
  if (Status st = check_tiles(s); !st) return st;
  const int64_t S = s.get_int("split_k", 1), U = s.get_int("unroll_k");
  const std::string stage = s.get_string("shared_stage");
  if (stage != "none" && s.get_int("tile_k") % (S * U))
    return Failure{FailureKind::KnobConflict, "tile_k", "tile_k must be a multiple of split_k x unroll_k"};
  if (w.int8_activations) return Failure{FailureKind::Unsupported, kName, "float32 activations only"};
  if (stage == "none" && s.get_int("double_buffer", 0))
    return Failure{FailureKind::KnobConflict, "double_buffer", "only staged chunks are double-buffered"};
  if (Status st = check_double_buffer(s, w.K); !st) return st;
  const int64_t staged_a = stage != "none" ? s.get_int("tile_m") * staged_a_row_words(s) * 4 : 0;
  const auto staged_w =
      int64_t(double(s.get_int("tile_n") * s.get_int("tile_k")) * staged_weight_bytes(stage, w.format));
  return check_staged_bytes(buffered_bytes(s, staged_a + staged_w + partial_tile_bytes(s)), "shared_stage",
                            "the staged chunks and the partial tiles");
}

namespace {
// `layout` with its panels in whole column tiles: a block computes all tile_n of its columns, and those
// past N (never stored) read the weight's padding, not past its end.
dsl::Int4Layout in_whole_tiles(dsl::Int4Layout layout, const Schedule& s) {
  layout.panel_multiple = int(s.get_int("tile_n") / s.get_int("thread_n"));
  return layout;
}
}  // namespace

// Panels of a thread's columns: a thread reads its thread_n columns of a k-pair as adjacent bytes, and
// acc(n % thread_n, n / thread_n, m) is one panel per thread, a footprint Halide can bound. A staged
// weight ("aw") is copied a whole chunk of tile_k values at a time, so K is padded to whole chunks.
dsl::Int4Layout gpu_int4_gemm_layout(const Schedule& s) {
  const int k_align = s.get_string("shared_stage", "a") == "aw" ? int(s.get_int("tile_k")) : 2;
  return in_whole_tiles({int(s.get_int("thread_n")), k_align}, s);
}

namespace {
// A Func of the block's outputs j, p, m (acc; with split_k S > 1 also its factor and that factor's copy
// in workgroup memory, each with its part u) placed at tile_outputs' block loop "no": a thread per thread
// column p, thread row `at` (m split into `at` and the row in the thread's tile `av`) and part, its tile
// unrolled.
void place_in_block(const dsl::ComputeDef& d, Func f, int P, int TM, int VN, int VM, int S) {
  Var m = d.var("m"), j = d.var("j"), p = d.var("p"), at("at"), av("av"), u("u");
  f.compute_at(d.output, Var("no")).bound_extent(j, VN).bound_extent(p, P / VN).bound_extent(m, TM);
  f.split(m, at, av, VM).unroll(j).unroll(av);
  if (S == 1) {
    f.reorder(j, av, p, at).gpu_threads(p, at);
    return;
  }
  f.bound_extent(u, S).reorder(j, av, p, at, u).gpu_threads(p, at, u);
}

// Both GEMMs' tiles: blocks over (panel, row tile), threads over (thread column, thread row), each
// thread's tile unrolled. acc(j, p, m) holds the block's outputs, a thread per (panel, thread_m rows): it
// is the block's Func so that A can be staged between its k-chunks, and each thread's share stays in its
// registers (dsl/gpu/private_arrays.h sizes the array for one thread). acc's update splits m the same
// way, into the thread row `at` and the row in the thread's tile `av`.
void tile_outputs(const dsl::ComputeDef& d, int P, int TM, int VN, int VM) {
  Func out = d.output, acc = d.stage("acc");
  Var n = d.var("n"), m = d.var("m");
  Var no("no"), ni("ni"), mo("mo"), mi("mi"), nt("nt"), nv("nv"), mt("mt"), mv("mv");
  out.split(n, no, ni, P, TailStrategy::GuardWithIf)
      .split(m, mo, mi, TM, TailStrategy::GuardWithIf)
      .split(ni, nt, nv, VN)
      .split(mi, mt, mv, VM)
      .reorder(nv, mv, nt, mt, no, mo)
      .gpu_blocks(no, mo)
      .gpu_threads(nt, mt)
      .unroll(nv)
      .unroll(mv);
  place_in_block(d, acc, P, TM, VN, VM, 1);
  acc.store_in(MemoryType::Register);
}

// The Func whose update sums a GEMM's k: acc itself, or with split_k S > 1 (`ku`, an RVar of acc's
// update of extent S) its factor part(j, p, m, u), thread (p, at, u)'s partial tile, which that thread
// keeps in registers as acc's threads keep theirs (tile_outputs). Each thread writes its partial tile to
// workgroup memory once, and after a barrier acc adds each output's S parts. The caller orders the
// sum's update, over the threads of sum_threads.
Func factor_split_k(const dsl::ComputeDef& d, RVar ku, int P, int TM, int VN, int VM, int S) {
  Func acc = d.stage("acc");
  if (S == 1) return acc;
  Var m = d.var("m"), j = d.var("j"), p = d.var("p"), at("at"), av("av"), u("u");
  Func part = acc.update().rfactor(ku, u);
  acc.update().split(m, at, av, VM).reorder(j, av, p, at).gpu_threads(p, at).unroll(j).unroll(av);
  Func shared = part.in(acc);
  place_in_block(d, part, P, TM, VN, VM, S);
  place_in_block(d, shared, P, TM, VN, VM, S);
  part.store_in(MemoryType::Register);
  shared.store_in(MemoryType::GPUShared);
  return part;
}

// The sum's update (factor_split_k) over its threads: `inner` (ending in the thread's column and row, p
// and at) innermost, then the split_k thread u, then `outer`.
void sum_threads(const dsl::ComputeDef& d, Stage update, std::vector<VarOrRVar> inner,
                 const std::vector<VarOrRVar>& outer, int S) {
  const Var p = d.var("p"), at("at"), u("u");
  if (S > 1) inner.push_back(u);
  inner.insert(inner.end(), outer.begin(), outer.end());
  update.reorder(inner);
  if (S > 1)
    update.gpu_threads(p, at, u);
  else
    update.gpu_threads(p, at);
}
}  // namespace

Status apply_gpu_int4_gemm(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const std::string stage = s.get_string("shared_stage");
  const int P = int(s.get_int("tile_n")), TM = int(s.get_int("tile_m"));
  const int VN = int(s.get_int("thread_n")), VM = int(s.get_int("thread_m")), U = int(s.get_int("unroll_k"));
  const int S = int(s.get_int("split_k", 1));
  const dsl::ComputeDef& d = q.def;
  Func acc = d.stage("acc"), a = d.stage("a");
  Var m = d.var("m"), j = d.var("j"), p = d.var("p");
  RVar k = d.reduce("k").rvar();

  tile_outputs(d, P, TM, VN, VM);
  Var at("at"), av("av");  // acc's thread row and row in the thread's tile (tile_outputs)
  RVar ko("ko"), ki("ki"), ku("ku");
  const bool stage_a = stage != "none";
  const int C = int(s.get_int("tile_k"));
  RVar kc("kc"), kr("kr");
  // k in chunks of tile_k when A is staged, split_k threads taking a contiguous share of each; else in
  // steps of split_k x unroll_k, a thread taking unroll_k of each.
  if (stage_a && S > 1)
    acc.update().split(k, kc, kr, C, TailStrategy::GuardWithIf).split(kr, ku, kr, C / S).split(kr, ko, ki, U);
  else if (stage_a)
    acc.update().split(k, kc, kr, C, TailStrategy::GuardWithIf).split(kr, ko, ki, U);
  else if (S > 1)
    acc.update().split(k, ko, kr, S * U, TailStrategy::GuardWithIf).split(kr, ku, ki, U);
  else
    acc.update().split(k, ko, ki, U, TailStrategy::GuardWithIf);
  Func sum = factor_split_k(d, ku, P, TM, VN, VM, S);
  Stage update = sum.update();
  update.split(m, at, av, VM).unroll(j).unroll(av).unroll(ki);
  sum_threads(d, update, {j, av, ki, ko, p, at}, stage_a ? std::vector<VarOrRVar>{kc} : std::vector<VarOrRVar>{}, S);
  if (stage_a) {
    // A's tile_m rows x tile_k values in workgroup memory (rows of staged_a_row_words), copied by the
    // block's threads together.
    Var ak = a.args()[0], am = a.args()[1], ako("ako"), akt("akt"), amo("amo"), amt("amt");
    a.compute_at(sum, kc)
        .store_in(MemoryType::GPUShared)
        .align_storage(ak, int(staged_a_row_words(s)))
        .bound_extent(am, TM)
        .split(ak, ako, akt, P / VN, TailStrategy::GuardWithIf)
        .split(am, amo, amt, TM / VM, TailStrategy::GuardWithIf)
        .reorder(akt, amt, ako, amo)
        .gpu_threads(akt, amt);
  }
  if (stage == "aw") {
    // The block's panels x tile_k values of k of the packed weight in workgroup memory: a thread per
    // panel (its thread_n columns' bytes adjacent) and row of packed k, copied with A's chunk.
    Func w = q.W.params()[0].in();  // the packed codes (PackedInt4::params)
    Var wj = w.args()[0], wk = w.args()[1], wp = w.args()[2], wko("wko"), wkt("wkt");
    w.compute_at(sum, kc)
        .store_in(MemoryType::GPUShared)
        .bound_extent(wj, VN)
        .bound_extent(wp, P / VN)
        .split(wk, wko, wkt, TM / VM, TailStrategy::GuardWithIf)
        .reorder(wj, wp, wkt, wko)
        .gpu_threads(wp, wkt)
        .unroll(wj);
  }
  if (stage == "aw_dequant") {
    // The block's tile_k x tile_n dequantized weights in workgroup memory, a thread per panel and row of
    // k, its thread_n columns unrolled. Stored with the panels inside k, so that the threads of a wave,
    // which differ in their panel, read adjacent words.
    Func w = d.stage("w");
    Var wj = w.args()[0], wk = w.args()[1], wp = w.args()[2], wko("wko"), wkt("wkt");
    w.compute_at(sum, kc)
        .store_in(MemoryType::GPUShared)
        .bound_extent(wj, VN)
        .bound_extent(wp, P / VN)
        .reorder_storage(wj, wp, wk)
        .split(wk, wko, wkt, TM / VM, TailStrategy::GuardWithIf)
        .reorder(wj, wp, wkt, wko)
        .gpu_threads(wp, wkt)
        .unroll(wj);
  }
  apply_double_buffer(q, s);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemm_traffic(const QMatMulWorkload& w, const Schedule& s) {
  // Each row tile of blocks reads the whole weight; each column tile reads A (into LDS when staged).
  // A thread dequantizes its columns once per k for its thread_m rows, or with "aw_dequant" the block
  // dequantizes its chunk once. A staged weight is written to LDS once per row tile and read there by
  // each of the block's thread rows.
  const int64_t P = s.get_int("tile_n"), TM = s.get_int("tile_m"), VN = s.get_int("thread_n"),
                VM = s.get_int("thread_m");
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  const double row_tiles = double((w.M + TM - 1) / TM), column_tiles = double((w.N + P - 1) / P);
  dsl::KernelTraffic t = gpu_qmatmul_reads(w, row_tiles, column_tiles);
  const std::string stage = s.get_string("shared_stage");
  const double dequantizations = stage == "aw_dequant" ? 1 : double(TM / VM);  // of each weight, per row tile
  t.valu_ops = row_tiles * dequantizations * K * N * 4 + M * K * N;
  t.lds_bytes = stage != "none" ? M * K * (N / double(VN)) * 4 + M * K * column_tiles * 4 : 0;
  t.lds_bytes += row_tiles * K * N * staged_weight_bytes(stage, w.format) * double(1 + TM / VM);
  if (staged_weight_bytes(stage, w.format) == 0) add_thread_row_weight_loads(t, w, s);
  if (stage == "none") add_repeated_loads(t, column_tiles, double(P / VN), M * K * 4);
  t.blocks = int64_t(row_tiles * column_tiles);
  t.threads_per_block = (P / VN) * (TM / VM);
  t.busy = M / (row_tiles * double(TM));          // rows past M: whole waves
  t.lanes_busy = N / (column_tiles * double(P));  // columns past N: lanes of every wave
  add_split_k(t, w, s);
  return t;
}

}  // namespace tetra::schedules

// ---- int8 activations: gpu_int4_gemm_a8 ----

namespace tetra::schedules {

namespace {
constexpr const char* kA8Name = "gpu_int4_gemm_a8";

// A chunk of tile_k k-blocks of the block's tile_m rows: the int8 values (a byte each) and per k-block
// its maximum and its sum (4 bytes each).
int64_t staged_a8_bytes(const QMatMulWorkload& w, const Schedule& s) {
  return s.get_int("tile_m") * s.get_int("tile_k") * (w.activation_block() + 8);
}
}  // namespace

namespace {
// What the int8 and float16 GEMMs share: the tiles of tile_outputs, and acc's update over the k-blocks
// in chunks of tile_k, each chunk's activations staged in workgroup memory by the block's X x Y threads.
struct ChunkedBlock {
  int TM = 0, X = 0, Y = 0;  // rows per block; threads per block in x and y
  Func sum = Func();         // acc, or its split_k factor (factor_split_k)
  RVar chunk{"kc"};          // sum's loop over chunks: the staged stages are computed at it

  // `stage`'s loops over (x, y) spread over the block's threads, `inner` innermost. (Split, not fused:
  // Halide bounds the rows of a fused loop loosely, and would check the bound in the kernel.)
  void spread(Stage stage, Var x, Var y, std::vector<VarOrRVar> inner) const {
    Var xo("xo"), xi("xi"), yo("yo"), yi("yi");
    stage.split(x, xo, xi, X, TailStrategy::GuardWithIf).split(y, yo, yi, Y, TailStrategy::GuardWithIf);
    inner.insert(inner.end(), {xi, yi, xo, yo});
    stage.reorder(inner).gpu_threads(xi, yi);
  }
};

// The output tiles, and acc's update over the k-blocks in chunks of tile_k; a k-block's dot products of
// the thread's tile ("dot") in registers, its words unrolled.
ChunkedBlock sum_blocks_in_chunks(const dsl::ComputeDef& d, const Schedule& s) {
  const int P = int(s.get_int("tile_n")), TM = int(s.get_int("tile_m"));
  const int VN = int(s.get_int("thread_n")), VM = int(s.get_int("thread_m")), KC = int(s.get_int("tile_k"));
  const int S = int(s.get_int("split_k", 1));
  ChunkedBlock block{TM, P / VN, TM / VM};
  Func acc = d.stage("acc"), dot = d.stage("dot");
  Var m = d.var("m"), j = d.var("j"), p = d.var("p");
  RVar blocks = d.reduce("k").rvar(), r = d.reduce("r").rvar();
  tile_outputs(d, P, TM, VN, VM);
  Var at("at"), av("av");  // acc's thread row and row in the thread's tile (tile_outputs)
  // Chunks of tile_k k-blocks, split_k threads taking a contiguous share of each.
  RVar kb("kb"), ku("ku");
  acc.update().split(blocks, block.chunk, kb, KC, TailStrategy::GuardWithIf);
  if (S > 1) acc.update().split(kb, ku, kb, KC / S);
  block.sum = factor_split_k(d, ku, P, TM, VN, VM, S);
  Stage update = block.sum.update();
  update.split(m, at, av, VM).unroll(j).unroll(av);
  sum_threads(d, update, {j, av, kb, p, at}, {block.chunk}, S);
  dot.compute_at(block.sum, kb).store_in(MemoryType::Register).unroll(j).unroll(m);
  dot.update().reorder(j, m, r).unroll(j).unroll(m).unroll(r);
  return block;
}

// A per-k-block stage of A's chunk (g, m) with an update over the block's values: a thread per row and
// k-block.
void stage_per_block(const ChunkedBlock& block, Func per_block, const dsl::ComputeDef& d) {
  Var m = d.var("m"), g = d.var("g");
  per_block.compute_at(block.sum, block.chunk).store_in(MemoryType::GPUShared).bound_extent(m, block.TM);
  block.spread(per_block, m, g, {});
  block.spread(per_block.update(), m, g, {d.reduce("in_block").rvar()});
}

// A's chunk packed in words (x, m), `lanes` the values of a word each thread unrolls: a thread per word
// and row.
void stage_words(const ChunkedBlock& block, Func words, Var x, Var lanes, const dsl::ComputeDef& d) {
  words.compute_at(block.sum, block.chunk).store_in(MemoryType::GPUShared).bound_extent(d.var("m"), block.TM);
  block.spread(words, x, d.var("m"), {lanes});
  words.unroll(lanes);
}
}  // namespace

KnobSpace gpu_int4_gemm_a8_space(const QMatMulWorkload& w, const TargetSpec& target) {
  KnobSpace s;
  s.template_name = kA8Name;
  s.family = target.family;
  s.knobs = tile_knobs(target);
  s.knobs.insert(s.knobs.end(),
                 {
                     // k-blocks of A quantized into workgroup memory at a time.
                     {"tile_k", dsl::int_values({1, 2, 4, 8})},
                     // Fixed by the workload (the k-block A is quantized in); recorded so the layout follows from the
                     // schedule alone.
                     {"block", dsl::int_values({w.activation_block()})},
                 });
  s.knobs.push_back(double_buffer_knob());
  s.knobs.push_back(split_k_knob());
  return s;
}

namespace {
// The int8 and float16 GEMMs' tiles at 2 x 4 outputs a thread (default_tiles), unsplit; A staged 128 values
// of k at a time.
Schedule chunked_default(const QMatMulWorkload& w, const TargetSpec& target, const char* template_name) {
  Schedule f = default_tiles(w, target, 2);
  int64_t chunk = 1;
  while (chunk < 8 && 2 * chunk * w.activation_block() <= 128) chunk *= 2;
  Schedule s;
  s.template_name = template_name;
  s.knobs = {{"tile_n", f.get_int("tile_n")},
             {"tile_m", f.get_int("tile_m")},
             {"thread_n", f.get_int("thread_n")},
             {"thread_m", f.get_int("thread_m")},
             {"tile_k", chunk},
             {"block", w.activation_block()}};
  return s;
}
}  // namespace

Schedule gpu_int4_gemm_a8_default(const QMatMulWorkload& w, const TargetSpec& target) {
  // Split in two, as the other GEMMs, where the tiles would give the arch's reference GPU less than a wave
  // per SIMD and workgroup memory holds the partial tiles too: the 128-row prefill on MI300X, 57.6 -> 28.8 us
  // by the static estimate. Only for an AMD arch that has a reference GPU: elsewhere no estimate backs the
  // split, and pocl 3.1's optimized build computes it wrong split in two (every weight form tried; right
  // unoptimized and on Oclgrind), so an OpenCL default split would be wrong on this machine's own device.
  Schedule s = chunked_default(w, target, kA8Name);
  if (!dsl::reference_gpu(target.gpu_arch)) return s;
  std::optional<Schedule> split = split_chunks(s, default_tiles(w, target, 2).get_int("split_k", 1),
                                               [&](const Schedule& x) { return staged_a8_bytes(w, x); });
  return split ? *split : s;
}

Status gpu_int4_gemm_a8_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec&) {
  if (!w.int8_activations) return Failure{FailureKind::Unsupported, kA8Name, "int8 activations only"};
  if (Status st = check_tiles(s); !st) return st;
  if (s.get_int("tile_k") % s.get_int("split_k", 1))
    return Failure{FailureKind::KnobConflict, "split_k", "tile_k must be a multiple of split_k"};
  if (Status st = check_double_buffer(s, (w.K + w.activation_block() - 1) / w.activation_block()); !st) return st;
  return check_staged_bytes(buffered_bytes(s, staged_a8_bytes(w, s) + partial_tile_bytes(s)), "tile_k",
                            "the staged chunk of A and the partial tiles");
}

dsl::Int4Layout gpu_int4_gemm_a8_layout(const Schedule& s) {
  // Panels of a thread's columns, a column's 8 codes of k in one word.
  dsl::Int4Layout layout{int(s.get_int("thread_n")), int(s.get_int("block")), /*vnni=*/true};
  layout.words = true;
  return in_whole_tiles(layout, s);
}

Status apply_gpu_int4_gemm_a8(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const dsl::ComputeDef& d = q.def;
  ChunkedBlock block = sum_blocks_in_chunks(d, s);
  // Each chunk of A's tile_m rows is quantized into workgroup memory by all the block's threads: the
  // k-blocks' maxima, then the packed int8 words and the blocks' sums (a_q recomputed inline from a_max).
  stage_per_block(block, d.stage("a_max"), d);
  stage_per_block(block, d.stage("a_sum"), d);
  stage_words(block, d.stage("a_words"), d.var("kq"), d.var("h"), d);
  apply_double_buffer(q, s);
  return dsl::ok_status();
}

namespace {
// The int8 GEMM's traffic before split_k's share, which the float16 GEMM's starts from too.
// Each row tile reads the whole weight; each column tile reads and quantizes A (the maximum, then the
// words and sums: about 4 operations a value). A thread's k-block of a column and row: two 4-way dot
// products per word of 8 weights, reading a's words from workgroup memory, and one multiply-add per
// k-block turning the sum into float32.
dsl::KernelTraffic unsplit_a8_traffic(const QMatMulWorkload& w, const Schedule& s) {
  const int64_t P = s.get_int("tile_n"), TM = s.get_int("tile_m"), VN = s.get_int("thread_n"),
                VM = s.get_int("thread_m");
  const double M = double(w.M), K = double(w.K), N = double(w.N), B = double(w.activation_block());
  const double row_tiles = double((w.M + TM - 1) / TM), column_tiles = double((w.N + P - 1) / P);
  dsl::KernelTraffic t = gpu_qmatmul_reads(w, row_tiles, column_tiles);
  t.valu_ops = M * N * K / 8 * 2 + M * N * K / B * 3 + column_tiles * M * K * 4;
  t.lds_bytes = M * K * (N / double(VN)) + column_tiles * M * K * 2;
  t.blocks = int64_t(row_tiles * column_tiles);
  t.threads_per_block = (P / VN) * (TM / VM);
  t.busy = M / (row_tiles * double(TM));          // rows past M: whole waves
  t.lanes_busy = N / (column_tiles * double(P));  // columns past N: lanes of every wave
  return t;
}
}  // namespace

dsl::KernelTraffic gpu_int4_gemm_a8_traffic(const QMatMulWorkload& w, const Schedule& s) {
  dsl::KernelTraffic t = unsplit_a8_traffic(w, s);
  add_thread_row_weight_loads(t, w, s);
  add_split_k(t, w, s);
  return t;
}

}  // namespace tetra::schedules

// ---- float16 activations: gpu_int4_gemm_h2 ----

namespace tetra::schedules {

namespace {
constexpr const char* kH2Name = "gpu_int4_gemm_h2";

// Whether the block's chunk of the weight is made float16 code pairs once in workgroup memory
// (shared_stage "aw_dequant"), rather than by each thread row for its own rows ("a").
bool h2_pairs_staged(const Schedule& s) { return s.get_string("shared_stage", "a") == "aw_dequant"; }

// A chunk of tile_k k-blocks of the block's tile_m rows: float16 values (2 bytes each) and per k-block
// their sum (4 bytes); with the weight staged, its tile_n columns' code pairs too (2 bytes a value).
int64_t staged_h2_bytes(const QMatMulWorkload& w, const Schedule& s) {
  const int64_t a = s.get_int("tile_m") * s.get_int("tile_k") * (w.activation_block() * 2 + 4);
  return a + (h2_pairs_staged(s) ? s.get_int("tile_n") * s.get_int("tile_k") * w.activation_block() * 2 : 0);
}
}  // namespace

bool gpu_int4_gemm_h2_applies(const QMatMulWorkload& w) {
  // The default's staged chunk (tile_m rows of tile_k k-blocks) depends on the workload alone, not the target.
  return w.f16_activations && w.M > 8 && dsl::f16_activations_supported(w).ok() &&
         check_staged_bytes(staged_h2_bytes(w, gpu_int4_gemm_h2_default(w, TargetSpec{})), "tile_k", "A's chunk").ok();
}

KnobSpace gpu_int4_gemm_h2_space(const QMatMulWorkload& w, const TargetSpec& target) {
  KnobSpace s = gpu_int4_gemm_a8_space(w, target);  // the same tiles, k-blocks, split_k and double buffering
  s.template_name = kH2Name;
  // A's chunk alone in workgroup memory, each thread row making the weight's words float16 code pairs for
  // its own rows ("a"), or the block's chunk of the weight made code pairs there once, by the block's
  // threads together ("aw_dequant"; records from before the knob mean "a").
  s.knobs.push_back({"shared_stage", dsl::string_values({"a", "aw_dequant"}), dsl::KnobValue(std::string("a"))});
  return s;
}

Schedule gpu_int4_gemm_h2_default(const QMatMulWorkload& w, const TargetSpec& target) {
  Schedule s = chunked_default(w, target, kH2Name);
  int64_t split = default_tiles(w, target, s.get_int("thread_n")).get_int("split_k", 1);
  // From 4 row tiles of 32 on, as the float32 GEMM: the block makes its weight chunk code pairs once in
  // workgroup memory, where each thread row made them for its own rows (13 of a word's 29 operations at
  // 2 x 4 outputs a thread), in chunks of 64 values of k, not 128 (the pairs take 2 bytes a value: more
  // blocks fit a CU). A thread then takes 4 x 4 outputs, split in two: as many waves as 2 x 4 unsplit, and
  // a k-block of each chunk a thread (unsplit, its 2 k-blocks' loads took over 180 VGPRs on RDNA). Where that
  // leaves the reference GPU less than a wave per SIMD, 2 x 4 split, LDS-bound by the estimate but twice
  // the waves. By the estimate for 128 x 4096 x 4096: MI300X 55.9 -> 42.8 us (2 x 4, and 32 columns a block:
  // spread_over_cus), MI210 193 -> 125 us, RX 7900 XTX 149 -> 98.9 us (4 x 4).
  if (w.M >= 128) {
    Schedule staged = s;
    int64_t chunk = 1;
    while (2 * chunk * w.activation_block() <= 64) chunk *= 2;
    staged.knobs["shared_stage"] = std::string("aw_dequant"), staged.knobs["tile_k"] = chunk;
    if (check_staged_bytes(staged_h2_bytes(w, staged), "", "").ok()) {
      s = staged;
      if (default_waves(w, target, 2) >= reference_simds(target)) s.knobs["thread_n"] = int64_t(4), split = 2;
    }
  }
  if (std::optional<Schedule> split_s =
          split_chunks(s, split, [&](const Schedule& x) { return staged_h2_bytes(w, x); }))
    return spread_over_cus(*split_s, w, target);
  if (s.get_int("thread_n") == 4) s.knobs["thread_n"] = int64_t(2);  // 4 x 4 only split
  return spread_over_cus(s, w, target);
}

Status gpu_int4_gemm_h2_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec&) {
  if (!w.f16_activations) return Failure{FailureKind::Unsupported, kH2Name, "float16 activations only"};
  if (Status st = dsl::f16_activations_supported(w); !st) return st;
  if (Status st = check_tiles(s); !st) return st;
  if (s.get_int("tile_k") % s.get_int("split_k", 1))
    return Failure{FailureKind::KnobConflict, "split_k", "tile_k must be a multiple of split_k"};
  if (Status st = check_double_buffer(s, (w.K + w.activation_block() - 1) / w.activation_block()); !st) return st;
  return check_staged_bytes(buffered_bytes(s, staged_h2_bytes(w, s) + partial_tile_bytes(s)), "tile_k",
                            h2_pairs_staged(s)
                                ? "the staged chunks of A and of the weight's code pairs, and the partial tiles"
                                : "the staged chunk of A in float16 and the partial tiles");
}

dsl::Int4Layout gpu_int4_gemm_h2_layout(const Schedule& s) {
  // Panels of a thread's columns, a column's 8 codes of k in one word. Code pairs made once a block are
  // made a whole chunk of tile_k k-blocks at a time, so K is padded to whole chunks.
  const int64_t chunk = h2_pairs_staged(s) ? s.get_int("tile_k") : 1;
  dsl::Int4Layout layout{int(s.get_int("thread_n")), int(chunk * s.get_int("block"))};
  layout.words = true;
  return in_whole_tiles(layout, s);
}

Status apply_gpu_int4_gemm_h2(QMatMulDef& q, const Schedule& s, const TargetSpec&) {
  const dsl::ComputeDef& d = q.def;
  // K is the workload's, so the chunks' extents are constants, not kernel arguments in scalar registers
  // (gfx9 has 102, and takes its constant operands from them too). With K an argument, pocl 3.1 also
  // summed A's k-blocks wrong in this kernel, where the int8 GEMM's, alike, passes.
  q.A.dim(0).set_extent(int(q.workload.K));
  ChunkedBlock block = sum_blocks_in_chunks(d, s);
  // Each chunk of A's tile_m rows is rounded to float16 pairs in workgroup memory by all the block's
  // threads, with the k-blocks' sums.
  stage_per_block(block, d.stage("a_sum"), d);
  stage_words(block, d.stage("a_pairs"), d.var("kw"), d.var("t"), d);
  if (h2_pairs_staged(s)) {
    // The block's code pairs, a thread per panel and word row, its thread_n columns' 4 pairs unrolled and
    // stored together, the panels next: a thread's pairs are adjacent words, and so are the threads of a wave.
    Func w_pairs = d.stage("w_pairs");
    Var t = d.var("t"), j = d.var("j"), kw = d.var("kw"), p = d.var("p");
    w_pairs.compute_at(block.sum, block.chunk)
        .store_in(MemoryType::GPUShared)
        .bound_extent(t, 4)
        .bound_extent(j, int(s.get_int("thread_n")))
        .bound_extent(p, block.X)
        .bound_extent(kw, int(s.get_int("tile_k") * s.get_int("block") / 8))  // a whole chunk's words
        .reorder_storage(t, j, p, kw);
    block.spread(w_pairs, p, kw, {t, j});
    w_pairs.unroll(t).unroll(j);
  }
  apply_double_buffer(q, s);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_int4_gemm_h2_traffic(const QMatMulWorkload& w, const Schedule& s) {
  // As the int8 GEMM. A thread makes each word of its columns 4 float16 code pairs once for its thread_m
  // rows (an XOR, then a shift, an and and an or a pair: 13 operations by gfx9's count), or with the pairs
  // staged the block makes them once, writes them to LDS (16 bytes a word) and each thread row reads them
  // there; then each row takes 4 dot products a word and 2 operations a k-block. Rounding A and summing
  // it: about 3 a value. split_k's share is added last.
  dsl::KernelTraffic t = unsplit_a8_traffic(w, s);
  const int64_t P = s.get_int("tile_n"), TM = s.get_int("tile_m"), VN = s.get_int("thread_n"),
                VM = s.get_int("thread_m");
  const double M = double(w.M), K = double(w.K), N = double(w.N);
  const double row_tiles = double((w.M + TM - 1) / TM), column_tiles = double((w.N + P - 1) / P);
  const double pair_makers = h2_pairs_staged(s) ? 1 : double(TM / VM);  // of each word, per row tile
  t.valu_ops = row_tiles * pair_makers * N * K / 8 * 13 + M * N * K / 8 * 4 +
               M * N * K / double(w.activation_block()) * 2 + column_tiles * M * K * 3;
  t.lds_bytes = M * K * (N / double(VN)) * 2 + column_tiles * M * K * 2;
  if (h2_pairs_staged(s))
    t.lds_bytes += row_tiles * N * K / 8 * 16 * double(1 + TM / VM);
  else
    add_thread_row_weight_loads(t, w, s);
  add_split_k(t, w, s);
  return t;
}

}  // namespace tetra::schedules
