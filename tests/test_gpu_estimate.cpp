// The arch facts (dsl/core/amd_arch.h), occupancy, and the static GPU estimate (dsl/core/gpu_estimate.h)
// on hand-computed cases; the GPU templates' traffic models and the GEMV's default split of k; the
// estimate runner that `tetra tune --estimate` uses.
#include <catch2/catch.hpp>
#include <filesystem>

#include "dsl/core/amd_arch.h"
#include "dsl/core/gpu_estimate.h"
#include "schedules/gpu/conv.h"
#include "schedules/gpu/int4_gemm.h"
#include "schedules/gpu/int4_gemv.h"
#include "schedules/gpu/templates.h"
#include "tuner/estimate_runner.h"

using namespace tetra;
using namespace tetra::dsl;

namespace {
const AmdArch& arch(const std::string& name) {
  const AmdArch* a = find_amd_arch(name);
  REQUIRE(a);
  return *a;
}

// The decode GEMV the estimate tests share: 1 x 4096 x 4096, int4 in k-blocks of 32, a scale per column.
QMatMulWorkload decode_gemv_4096() {
  QMatMulWorkload w;
  w.M = 1, w.K = 4096, w.N = 4096;
  w.format.k_group = 32, w.format.per_n = true;
  return w;
}
}  // namespace

TEST_CASE("AMD arch facts: occupancy from registers and LDS", "[gpu]") {
  // gfx942: 512 registers a lane shared with AGPRs, granule 8, at most 8 waves.
  CHECK(waves_per_simd(arch("gfx942"), 10, 0, 0, 64) == 8);
  CHECK(waves_per_simd(arch("gfx942"), 128, 0, 0, 64) == 4);
  CHECK(waves_per_simd(arch("gfx942"), 64, 64, 0, 64) == 4);  // AGPRs count
  // gfx906: 256 registers, granule 4, at most 10 waves: 65 -> 68 registers -> 3 waves.
  CHECK(waves_per_simd(arch("gfx906"), 65, 0, 0, 64) == 3);
  CHECK(waves_per_simd(arch("gfx908"), 32, 100, 0, 64) == 2);  // separate AGPR file: the larger counts
  // gfx1100: 1536 registers in wave32, granule 24: 97 -> 120 -> 12 waves; gfx1030: 1024, granule 16.
  CHECK(waves_per_simd(arch("gfx1100"), 97, 0, 0, 32) == 12);
  CHECK(waves_per_simd(arch("gfx1030"), 97, 0, 0, 32) == 9);
  // LDS: 40000 bytes a block of 256 threads on gfx90a: one block (4 waves) on the CU's 4 SIMDs.
  CHECK(waves_per_simd(arch("gfx90a"), 16, 0, 40000, 256) == 1);
  CHECK(waves_per_simd(arch("gfx90a"), 16, 0, 70000, 256) == 0);  // does not fit
  // RDNA's WGP shares 128 KiB: 3 blocks of 40000 bytes, 8 waves each, over 4 SIMDs.
  CHECK(waves_per_simd(arch("gfx1201"), 16, 0, 40000, 256) == 6);
  // Vendors count CUs on RDNA too, of 2 SIMDs each: RX 7900 XTX's 96 CUs are 192 SIMDs; MI300X's 304, 1216.
  CHECK(simds_of(arch("gfx1100"), 96) == 192);
  CHECK(simds_of(arch("gfx942"), 304) == 1216);
  CHECK_FALSE(check_amd_arch("gfx9999").ok());
  for (const AmdArch& a : amd_arch_table()) {
    INFO(a.name);
    CHECK(reference_gpu(a.name) != nullptr);  // every arch has a reference device
    CHECK(a.wavefront == (std::string(a.name).rfind("gfx9", 0) == 0 ? 64 : 32));
  }
}

TEST_CASE("GPU estimate: memory, latency and ALU bounds on hand-computed cases", "[gpu]") {
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  REQUIRE(std::string(mi300x.name) == "MI300X");
  KernelTraffic t;
  t.global_bytes = 10.6e6;  // 2 us at 5.3 TB/s
  t.valu_ops = 1e6;
  t.blocks = 304 * 4 * 8;  // 8 waves for each of the 1216 SIMDs
  t.threads_per_block = 64;
  GpuEstimate e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.memory_us == Approx(2.0));
  CHECK(e.valu_us == Approx(1e6 / (304 * 64 * 2.1e3)));
  CHECK(e.time_us == Approx(2.0));
  CHECK(e.bound == "memory");
  // One wave per SIMD: a quarter of what hides latency, so four times as long.
  t.blocks = 304 * 4;
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.waves_resident == Approx(1.0));
  CHECK(e.time_us == Approx(8.0));
  CHECK(e.bound == "latency");
  // Occupancy limits it the same way when the grid is large.
  t.blocks = 304 * 4 * 8;
  CHECK(estimate_kernel(t, arch("gfx942"), mi300x, 2).time_us == Approx(4.0));
  // Much arithmetic on little data.
  t.valu_ops = 1e10;
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.bound == "valu");
  CHECK(e.time_us == Approx(1e10 / (304 * 64 * 2.1e3)));
  // Waves with nothing to compute hide no latency: 2 waves a SIMD launched, half of them idle.
  t.valu_ops = 1e6;
  t.blocks = 304 * 4 * 2;
  t.busy = 0.5;
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.waves_resident == Approx(1.0));
  CHECK(e.time_us == Approx(8.0));
  // Blocks of 16 threads use a quarter of each 64-wide wave: 8 waves a SIMD keep the loads of 2 in flight,
  // and the ALU does a quarter of the work an issue.
  t.busy = 1;
  t.blocks = 304 * 4 * 8;
  t.threads_per_block = 16;
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.waves_resident == Approx(8.0));
  CHECK(e.time_us == Approx(4.0));
  CHECK(e.bound == "latency");
  t.valu_ops = 1e10;
  CHECK(estimate_kernel(t, arch("gfx942"), mi300x, 8).time_us == Approx(4 * 1e10 / (304 * 64 * 2.1e3)));
}

TEST_CASE("GPU estimate: a block's waves share one CU's SIMDs, so few large blocks leave CUs idle", "[gpu]") {
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double valu_us = 1e10 / (304 * 64 * 2.1e3);  // every SIMD busy
  KernelTraffic t;
  t.global_bytes = 1e3;
  t.valu_ops = 1e10;
  // 152 blocks of 8 waves: 1216 waves, one for each SIMD, but on half the CUs, 2 waves a SIMD there.
  t.blocks = 152;
  t.threads_per_block = 512;
  GpuEstimate e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.bound == "valu");
  CHECK(e.time_us == Approx(2 * valu_us));
  // The same waves in 608 blocks of 2 fill every CU.
  t.blocks = 608;
  t.threads_per_block = 128;
  CHECK(estimate_kernel(t, arch("gfx942"), mi300x, 8).time_us == Approx(valu_us));
  // 152 blocks of 4 waves: a wave for each SIMD of half the CUs, as before.
  t.blocks = 152;
  t.threads_per_block = 256;
  CHECK(estimate_kernel(t, arch("gfx942"), mi300x, 8).time_us == Approx(2 * valu_us));
  // On RDNA a block's WGP has 4 SIMDs: 24 blocks of 8 waves of 32 fill half of RX 7900 XTX's 48 WGPs.
  const GpuDevice& rx7900xtx = *reference_gpu("gfx1100");
  t.blocks = 24;
  e = estimate_kernel(t, arch("gfx1100"), rx7900xtx, 16);
  CHECK(e.time_us == Approx(2 * e.valu_us));
  t.blocks = 48;
  CHECK(estimate_kernel(t, arch("gfx1100"), rx7900xtx, 16).time_us == Approx(e.valu_us));
}

TEST_CASE("GPU estimate: re-reads of an operand that fits in L2 are served from it", "[gpu]") {
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  REQUIRE(mi300x.l2_mib == 4);
  KernelTraffic t;
  t.global_bytes = 10.6e6;  // 2 us at 5.3 TB/s
  t.blocks = 304 * 4 * 8;
  t.threads_per_block = 64;
  const double l2_bytes_per_us = 304 * 64 * 2.1e3;
  // 100 re-reads of a 2 MiB operand: from L2, at 64 bytes a clock a CU.
  t.rereads = {{100 * 2.0 * 1024 * 1024, 2.0 * 1024 * 1024}};
  GpuEstimate e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.memory_us == Approx(2.0));
  CHECK(e.cache_us == Approx(t.rereads[0].bytes / l2_bytes_per_us));
  CHECK(e.time_us == Approx(e.memory_us + e.cache_us));
  CHECK(e.bound == "memory");
  // Past L2 (the 8 MiB of a 4096 x 4096 int4 weight), they come from memory.
  t.rereads = {{3 * 8.0 * 1024 * 1024, 8.0 * 1024 * 1024}};
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.cache_us == 0);
  CHECK(e.memory_us == Approx((10.6e6 + t.rereads[0].bytes) / 5300e3));
  // MI210's L2 holds 8 MiB.
  CHECK(estimate_kernel(t, arch("gfx90a"), *reference_gpu("gfx90a"), 8).cache_us > 0);
}

TEST_CASE("GPU estimate: what a block's threads load again is charged at the vector cache's rate", "[gpu]") {
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double l1_bytes_per_us = 304 * 64 * 2.1e3;
  KernelTraffic t;
  t.global_bytes = 10.6e6;  // 2 us at 5.3 TB/s
  t.blocks = 304 * 4 * 8;
  t.threads_per_block = 64;
  // Loaded once, the bytes take the vector cache far less time than memory.
  GpuEstimate e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.loads_us == Approx(10.6e6 / l1_bytes_per_us));
  CHECK(e.bound == "memory");
  // Loaded again by other threads of their blocks: 10 us of returning bytes to lanes, whatever hits in L1.
  t.repeated_loads = 10 * l1_bytes_per_us - 10.6e6;
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.loads_us == Approx(10.0));
  CHECK(e.time_us == Approx(10.0));
  CHECK(e.bound == "loads");
  // A block for half the CUs: half the vector caches work, however many waves a block has. (Memory, with a
  // wave for every eighth SIMD, takes 0.2 us / (1/8 x 1/4) = 6.4 us.)
  t.global_bytes = 1.06e6;
  t.repeated_loads = 10 * l1_bytes_per_us - 1.06e6;
  t.blocks = 304 / 2;
  e = estimate_kernel(t, arch("gfx942"), mi300x, 8);
  CHECK(e.time_us == Approx(20.0));
  CHECK(e.bound == "loads");
  t.threads_per_block = 256;
  CHECK(estimate_kernel(t, arch("gfx942"), mi300x, 8).time_us == Approx(20.0));
  // On RDNA a block's WGP has two CUs, each with its vector cache: 24 blocks of 8 waves keep half of RX 7900
  // XTX's 96 CUs loading.
  const GpuDevice& rx7900xtx = *reference_gpu("gfx1100");
  t.blocks = 24;
  e = estimate_kernel(t, arch("gfx1100"), rx7900xtx, 16);
  CHECK(e.bound == "loads");
  CHECK(e.time_us == Approx(2 * e.loads_us));
}

TEST_CASE("GPU GEMMs: each thread row loading the weight itself is charged, so one row a thread is not the fastest",
          "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  w.M = 128;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value();
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double weight = schedules::gpu_weight_bytes(w), a = 128.0 * 4096 * 4;
  auto repeated = [&](const Schedule& s) { return schedules::gpu_qmatmul_traffic(w, s).repeated_loads; };
  // The float32 GEMM at 32 x 64 tiles, 4 x 4 outputs a thread (4 row tiles, 8 thread rows, 16 thread columns):
  // staged, the block loads its weight chunk once; unstaged, each thread row loads it, and unstaged A each
  // thread column.
  Schedule f32 = schedules::gpu_int4_gemm_default(w, gfx942);
  REQUIRE((f32.get_int("tile_m") == 32 && f32.get_int("thread_m") == 4 && f32.get_int("tile_n") == 64 &&
           f32.get_int("thread_n") == 4 && f32.get_string("shared_stage") == "aw_dequant"));
  CHECK(repeated(f32) == 0);
  f32.knobs["shared_stage"] = std::string("aw");
  CHECK(repeated(f32) == 0);
  f32.knobs["shared_stage"] = std::string("a");
  CHECK(repeated(f32) == Approx(4 * 7 * weight));
  f32.knobs["shared_stage"] = std::string("none");
  CHECK(repeated(f32) == Approx(4 * 7 * weight + 64 * 15 * a));
  // The float16 GEMM: the block makes its chunk's code pairs from one load, or each thread row loads it.
  w.f16_activations = true;
  Schedule h2 = schedules::gpu_int4_gemm_h2_default(w, gfx942);
  REQUIRE(h2.get_string("shared_stage") == "aw_dequant");
  CHECK(repeated(h2) == 0);
  h2.knobs["shared_stage"] = std::string("a");
  CHECK(repeated(h2) == Approx(4 * (32 / h2.get_int("thread_m") - 1) * weight));
  // The int8 GEMM always loads the weight by thread row. One row a thread, 4 columns (512 threads, split in
  // two), has 32 thread rows loading it where the default has 8: by the estimate it is bound by those loads,
  // and slower than the default, where without them it looked faster (the loads term is all that separates them).
  w.f16_activations = false, w.int8_activations = true;
  const Schedule a8 = schedules::gpu_int4_gemm_a8_default(w, gfx942);
  REQUIRE((a8.get_int("tile_m") == 32 && a8.get_int("thread_m") == 4 && a8.get_int("split_k") == 2));
  Schedule one_row = a8;
  one_row.knobs["thread_m"] = int64_t(1), one_row.knobs["thread_n"] = int64_t(4);
  REQUIRE(schedules::gpu_int4_gemm_a8_check(w, one_row, gfx942).ok());
  CHECK(repeated(a8) == Approx(4 * 7 * weight));
  CHECK(repeated(one_row) == Approx(4 * 31 * weight));
  const GpuEstimate e = estimate_kernel(schedules::gpu_qmatmul_traffic(w, a8), arch("gfx942"), mi300x, 8);
  KernelTraffic t1 = schedules::gpu_qmatmul_traffic(w, one_row);
  const GpuEstimate e1 = estimate_kernel(t1, arch("gfx942"), mi300x, 8);
  CHECK(e1.bound == "loads");
  CHECK(e1.time_us > e.time_us);
  t1.repeated_loads = 0;
  CHECK(estimate_kernel(t1, arch("gfx942"), mi300x, 8).time_us < e.time_us);
}

TEST_CASE("GPU conv: tiles past a small map's edge count as idle in the estimate", "[gpu]") {
  // The CNN's 3x3 32 -> 64 conv of stride 2: a 16x16 output map.
  QConvWorkload w;
  w.N = 1, w.C = 32, w.M = 64, w.group = 1, w.H = w.W = 32, w.OH = w.OW = 16;
  w.KH = w.KW = 3, w.SH = w.SW = 2;
  Schedule s;
  s.template_name = "gpu_int4_conv";
  s.knobs = {{"tile_ow", int64_t(16)},  {"tile_oh", int64_t(4)},   {"thread_m", int64_t(4)},
             {"thread_ow", int64_t(2)}, {"threads_m", int64_t(4)}, {"shared_stage", std::string("w")},
             {"tile_k", int64_t(8)}};
  KernelTraffic t = schedules::gpu_conv_traffic(w, s);
  CHECK((t.busy == Approx(1.0) && t.lanes_busy == Approx(1.0)));  // whole tiles
  s.knobs["tile_ow"] = int64_t(64);                               // three quarters of each row's lanes idle
  t = schedules::gpu_conv_traffic(w, s);
  CHECK((t.busy == Approx(1.0) && t.lanes_busy == Approx(0.25)));
  s.knobs["tile_oh"] = int64_t(32);  // and half the rows: whole waves
  t = schedules::gpu_conv_traffic(w, s);
  CHECK((t.busy == Approx(0.5) && t.lanes_busy == Approx(0.25)));
  w.M = 56;  // and 8 of the last tile's 16 channels
  CHECK(schedules::gpu_conv_traffic(w, s).busy == Approx(0.5 * 56 / 64));
  // Idle lanes cost a whole wave's issue: the same grid with three quarters of its lanes idle takes 4
  // times as long when ALU-bound.
  KernelTraffic full;
  full.valu_ops = 1e10, full.blocks = 304 * 4 * 8, full.threads_per_block = 64;
  KernelTraffic quarter = full;
  quarter.lanes_busy = 0.25;
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  CHECK(estimate_kernel(quarter, arch("gfx942"), mi300x, 8).time_us ==
        Approx(4 * estimate_kernel(full, arch("gfx942"), mi300x, 8).time_us));
}

TEST_CASE("GPU conv: each thread's own input loads, and unstaged weight loads, are charged", "[gpu]") {
  // ResNet's 3x3, 256 -> 256 channels on 14x14: 2 channels and 2 columns a thread, 4 threads across
  // channels, blocks of 16 x 8 outputs, the weight staged.
  QConvWorkload w;
  w.N = 1, w.C = w.M = 256, w.group = 1, w.H = w.W = w.OH = w.OW = 14;
  w.KH = w.KW = 3, w.pad_top = w.pad_left = w.pad_bottom = w.pad_right = 1;
  Schedule s;
  s.template_name = "gpu_int4_conv";
  s.knobs = {{"tile_ow", int64_t(16)},  {"tile_oh", int64_t(8)},   {"thread_m", int64_t(2)},
             {"thread_ow", int64_t(2)}, {"threads_m", int64_t(4)}, {"shared_stage", std::string("w")},
             {"tile_k", int64_t(16)}};
  // 12544 threads, each loading per input channel and kernel row the 4 columns its 2 outputs' 3 taps span;
  // less the input's first read by each of the 32 channel tiles.
  const double threads = 256.0 * 14 * 14 / 4, input = 256.0 * 14 * 14 * 4;
  CHECK(schedules::gpu_conv_traffic(w, s).repeated_loads == Approx(threads * 256 * 3 * 4 * 4 - 32 * input));
  // Unstaged, each thread also loads its 2 channels' weights of every tap, less the weight's first read by
  // each of the 2 pixel tiles (16 x 8).
  Schedule unstaged = s;
  unstaged.knobs["shared_stage"] = std::string("none");
  const double weight = 256.0 * 256 * 9 / 2;
  CHECK(schedules::gpu_conv_traffic(w, unstaged).repeated_loads ==
        Approx(threads * 256 * 3 * 4 * 4 - 32 * input + threads * 2 * 256 * 9 / 2 - 2 * weight));
  // Stride 2: the columns of 2 outputs' taps overlap in one; past the taps' reach (stride 4) none do.
  w.SW = 2;
  CHECK(schedules::gpu_conv_traffic(w, s).repeated_loads == Approx(threads * 256 * 3 * 5 * 4 - 32 * input));
  w.SW = 4;
  CHECK(schedules::gpu_conv_traffic(w, s).repeated_loads == Approx(threads * 256 * 3 * 6 * 4 - 32 * input));
  // Stride 2 and dilation 2: the second output's taps read columns 2, 4 and 6, two of them the first's.
  w.SW = 2, w.DW = 2;
  CHECK(schedules::gpu_conv_traffic(w, s).repeated_loads == Approx(threads * 256 * 3 * 4 * 4 - 32 * input));
  w.DW = 1;
  // On a map whose blocks fill MI210 (3x3, 64 -> 64 channels on 112x112; the default gives a thread 4
  // channels), one channel a thread loads 4 inputs per 6 multiply-adds, not 24: by the estimate it is bound
  // by its loads and slower than the default, where without them the two tied (both bound by their ALU work).
  w.C = w.M = 64, w.H = w.W = w.OH = w.OW = 112, w.SW = 1;
  const TargetSpec gfx90a = parse_target("hip:gfx90a").value();
  const Schedule large = schedules::gpu_conv_default(w, gfx90a);
  REQUIRE(large.get_int("thread_m") == 4);
  Schedule one_channel = large;
  one_channel.knobs["thread_m"] = int64_t(1);
  REQUIRE(schedules::gpu_conv_check(w, one_channel, gfx90a).ok());
  const GpuDevice& mi210 = *reference_gpu("gfx90a");
  KernelTraffic t1 = schedules::gpu_conv_traffic(w, one_channel);
  const GpuEstimate e = estimate_kernel(schedules::gpu_conv_traffic(w, large), arch("gfx90a"), mi210, 4),
                    e1 = estimate_kernel(t1, arch("gfx90a"), mi210, 4);
  CHECK(e1.bound == "loads");
  CHECK(e1.time_us > e.time_us);
  CHECK(e.bound == "valu");
  t1.repeated_loads = 0;
  CHECK(estimate_kernel(t1, arch("gfx90a"), mi210, 4).time_us == Approx(e.time_us));
}

TEST_CASE("GPU conv: on small maps the default gives a thread 2 channels, which fills more of the GPU", "[gpu]") {
  // ResNet's last stage: 3x3, 512 -> 512 channels on 7x7.
  QConvWorkload w;
  w.N = 1, w.C = w.M = 512, w.group = 1, w.H = w.W = w.OH = w.OW = 7;
  w.KH = w.KW = 3, w.pad_top = w.pad_left = w.pad_bottom = w.pad_right = 1;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value();
  Schedule s = schedules::gpu_conv_default(w, gfx942);
  CHECK(s.get_int("thread_m") == 2);
  CHECK(s.get_int("tile_ow") == 8);  // the map's width rounded up
  // 4 channels a thread and 16 columns a block, as on large maps: half the threads, and lanes idle.
  Schedule large_map_tiles = s;
  large_map_tiles.knobs["thread_m"] = int64_t(4), large_map_tiles.knobs["tile_ow"] = int64_t(16);
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double small = estimate_kernel(schedules::gpu_conv_traffic(w, s), arch("gfx942"), mi300x, 4).time_us;
  const double large =
      estimate_kernel(schedules::gpu_conv_traffic(w, large_map_tiles), arch("gfx942"), mi300x, 4).time_us;
  CHECK(small < 0.6 * large);
  // split_c 4 (one thread across channels, four across the input channels): four times the waves for
  // four times the threads; each output's 4 partial sums go through LDS (written and read) and are added.
  Schedule split = s;
  split.knobs["threads_m"] = int64_t(1), split.knobs["split_c"] = int64_t(4);
  REQUIRE(schedules::gpu_conv_check(w, split, gfx942).ok());
  Schedule unsplit = split;
  unsplit.knobs["split_c"] = int64_t(1);
  const KernelTraffic t_split = schedules::gpu_conv_traffic(w, split),
                      t_unsplit = schedules::gpu_conv_traffic(w, unsplit);
  const double outputs = 512.0 * 7 * 7;
  CHECK(t_split.threads_per_block == 4 * t_unsplit.threads_per_block);
  CHECK(t_split.blocks == t_unsplit.blocks);
  CHECK(t_split.lds_bytes - t_unsplit.lds_bytes == Approx(outputs * 4 * 4 * 2));
  CHECK(t_split.valu_ops - t_unsplit.valu_ops == Approx(outputs * 4));
  // At the same occupancy, faster than the default by the estimate: the waves it adds were idle SIMDs.
  CHECK(estimate_kernel(t_split, arch("gfx942"), mi300x, 4).time_us < 0.5 * small);
  // split_c takes the threads in z.
  Schedule z_taken = split;
  z_taken.knobs["threads_m"] = int64_t(2);
  CHECK_FALSE(schedules::gpu_conv_check(w, z_taken, gfx942).ok());
  // A map that fills the GPU keeps 4 channels a thread: ResNet's 56x56 x 64 on RX 7900 XTX.
  w.C = w.M = 64, w.H = w.W = w.OH = w.OW = 56;
  Schedule wide = schedules::gpu_conv_default(w, parse_target("hip:gfx1100").value());
  CHECK(wide.get_int("thread_m") == 4);
  CHECK(wide.get_int("tile_ow") == 32);
}

TEST_CASE("GPU conv: where its blocks would leave CUs idle, the default makes smaller blocks", "[gpu]") {
  // ResNet's 3x3, 64 -> 64 channels on 56x56, batch 1: blocks of 32 x 8 outputs and 4 threads across
  // channels of 2 would make 112 blocks of 8 waves, for MI300X's 304 CUs of 4 SIMDs.
  QConvWorkload w;
  w.N = 1, w.C = w.M = 64, w.group = 1, w.H = w.W = w.OH = w.OW = 56;
  w.KH = w.KW = 3, w.pad_top = w.pad_left = w.pad_bottom = w.pad_right = 1;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value();
  const Schedule s = schedules::gpu_conv_default(w, gfx942);
  CHECK(s.get_int("threads_m") == 2);
  const KernelTraffic t = schedules::gpu_conv_traffic(w, s);
  CHECK(t.blocks == 224);
  CHECK(t.threads_per_block == 4 * 64);
  Schedule crowded = s;
  crowded.knobs["threads_m"] = int64_t(4);
  REQUIRE(schedules::gpu_conv_traffic(w, crowded).blocks == 112);
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double fewer = estimate_kernel(t, arch("gfx942"), mi300x, 8).time_us;
  CHECK(fewer < 0.6 * estimate_kernel(schedules::gpu_conv_traffic(w, crowded), arch("gfx942"), mi300x, 8).time_us);
  // Blocks of 2 waves add no SIMDs, and 32 channel tiles read the input again: slower by the estimate.
  Schedule smaller = s;
  smaller.knobs["threads_m"] = int64_t(1);
  CHECK(estimate_kernel(schedules::gpu_conv_traffic(w, smaller), arch("gfx942"), mi300x, 8).time_us > fewer);
  // MI210's 104 CUs: the 112 blocks fill them, and the default keeps them.
  CHECK(schedules::gpu_conv_default(w, parse_target("hip:gfx90a").value()).get_int("threads_m") == 4);
  // 3x3, 256 -> 256 on 14x14 on MI300X: 64 blocks of 4 waves, as before.
  w.C = w.M = 256, w.H = w.W = w.OH = w.OW = 14;
  const Schedule small_map = schedules::gpu_conv_default(w, gfx942);
  CHECK((small_map.get_int("threads_m") == 4 && small_map.get_int("tile_oh") == 8));
}

TEST_CASE("GPU GEMV: traffic model and the default split of k", "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  // 8 MiB of codes, 128 x 4096 float32 scales; A and Y once.
  CHECK(schedules::gpu_weight_bytes(w) == Approx(4096.0 * 4096 / 2 + 128.0 * 4096 * 4));
  TargetSpec gfx942 = parse_target("hip:gfx942").value(), gfx1200 = parse_target("hip:gfx1200").value();
  Schedule s = schedules::gpu_int4_gemv_default(w, gfx942);
  KernelTraffic t = schedules::gpu_qmatmul_traffic(w, s);
  CHECK(t.global_bytes == Approx(schedules::gpu_weight_bytes(w) + 4096 * 4 * 2));
  // Word loads (the default for int4): 3 operations a weight; byte loads 5; float16 scales 2 more.
  CHECK(s.get_int("load_bytes") == 4);
  CHECK(t.valu_ops == Approx(4096.0 * 4096 * 3));
  Schedule bytes = s;
  bytes.knobs["load_bytes"] = int64_t(1);
  CHECK(schedules::gpu_qmatmul_traffic(w, bytes).valu_ops == Approx(4096.0 * 4096 * 5));
  QMatMulWorkload half_scales = w;
  half_scales.format.f16_scale = true;
  CHECK(schedules::gpu_qmatmul_traffic(half_scales, s).valu_ops == Approx(4096.0 * 4096 * 5));
  CHECK(schedules::gpu_qmatmul_traffic(half_scales, bytes).valu_ops == Approx(4096.0 * 4096 * 7));
  // The float16-activation GEMV: 17 operations a word of 8 weights, 2 a k-block of 32 and column.
  QMatMulWorkload f16 = w;
  f16.f16_activations = true;
  Schedule h2 = schedules::gpu_int4_gemv_h2_default(f16, gfx942);
  CHECK(schedules::gpu_qmatmul_traffic(f16, h2).valu_ops == Approx(4096.0 * 4096 * (17.0 / 8 + 2.0 / 32)));
  // The float16-activation GEMM at 128 rows, each thread row making its columns' code pairs (the default
  // below 128 rows): a thread makes a word's code pairs once for its 4 rows (13 operations), each row takes
  // 4 dot products a word and 2 operations a k-block; rounding A, 3 a value per column tile; the 2 partial
  // sums of each output (split_k) added.
  QMatMulWorkload f16_gemm = f16;
  f16_gemm.M = 128;
  const Schedule h2_default = schedules::gpu_int4_gemm_h2_default(f16_gemm, gfx942);
  Schedule gh2 = h2_default;
  gh2.knobs["shared_stage"] = std::string("a"), gh2.knobs["tile_n"] = int64_t(64);
  REQUIRE((gh2.get_int("tile_m") == 32 && gh2.get_int("thread_m") == 4 && gh2.get_int("thread_n") == 2));
  // The default's blocks take 32 columns, not 64: 256 blocks of 8 waves (split in two) would leave 48 of
  // MI300X's 304 CUs idle.
  CHECK(h2_default.get_int("tile_n") == 32);
  Schedule wide = h2_default;
  wide.knobs["tile_n"] = int64_t(64);
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  CHECK(estimate_kernel(schedules::gpu_qmatmul_traffic(f16_gemm, h2_default), arch("gfx942"), mi300x, 4).time_us <
        estimate_kernel(schedules::gpu_qmatmul_traffic(f16_gemm, wide), arch("gfx942"), mi300x, 4).time_us);
  // 256 tiles of 4 waves leave some of MI300X's 1216 SIMDs idle: two threads a tile.
  REQUIRE(gh2.get_int("split_k") == 2);
  CHECK(schedules::gpu_qmatmul_traffic(f16_gemm, gh2).valu_ops ==
        Approx(4.0 * 8 * 4096 * 4096 / 8 * 13 + 128.0 * 4096 * 4096 * (4.0 / 8 + 2.0 / 32) + 64.0 * 128 * 4096 * 3 +
               128.0 * 4096 * 2));
  // split_k: twice the threads in as many blocks, each output's 2 partial sums written to LDS and read.
  Schedule unsplit = gh2;
  unsplit.knobs.erase("split_k");
  const KernelTraffic split_traffic = schedules::gpu_qmatmul_traffic(f16_gemm, gh2),
                      unsplit_traffic = schedules::gpu_qmatmul_traffic(f16_gemm, unsplit);
  CHECK(split_traffic.blocks == unsplit_traffic.blocks);
  CHECK(split_traffic.threads_per_block == 2 * unsplit_traffic.threads_per_block);
  CHECK(split_traffic.lds_bytes - unsplit_traffic.lds_bytes == Approx(128.0 * 4096 * 2 * 4 * 2));
  // At 64 rows MI210's 416 SIMDs have a wave each from the 128 tiles: no split.
  QMatMulWorkload f16_gemm_64 = f16_gemm;
  f16_gemm_64.M = 64;
  CHECK(schedules::gpu_int4_gemm_h2_default(f16_gemm_64, parse_target("hip:gfx90a").value()).get_int("split_k", 1) ==
        1);
  // The weight from memory once and again by each of the other 3 row tiles; A (2 MiB) once and again by
  // each of the other 63 column tiles; Y once.
  const KernelTraffic gemm_reads = schedules::gpu_qmatmul_traffic(f16_gemm, gh2);
  const double a_bytes = 128.0 * 4096 * 4, weight_bytes = schedules::gpu_weight_bytes(f16_gemm);
  CHECK(gemm_reads.global_bytes == Approx(weight_bytes + a_bytes + a_bytes));
  REQUIRE(gemm_reads.rereads.size() == 2);
  CHECK(gemm_reads.rereads[0].bytes == Approx(3 * weight_bytes));
  CHECK(gemm_reads.rereads[1].bytes == Approx(63 * a_bytes));
  CHECK(gemm_reads.rereads[1].operand_bytes == Approx(a_bytes));
  // Against the float32 GEMM's 4 operations a weight per thread row and one multiply-add a weight per row
  // (where each thread row dequantizes its columns: not the default at 128 rows).
  Schedule f32_gemm = schedules::gpu_int4_gemm_default(f16_gemm, gfx942);
  f32_gemm.knobs["shared_stage"] = std::string("a"), f32_gemm.knobs["thread_n"] = int64_t(2);
  CHECK(schedules::gpu_qmatmul_traffic(f16_gemm, f32_gemm).valu_ops >
        1.9 * schedules::gpu_qmatmul_traffic(f16_gemm, gh2).valu_ops);
  // 64 blocks of one wave at split 1 are far from 4 waves on each of MI300X's 1216 SIMDs: the most, 16.
  CHECK(s.get_int("split_k") == 16);
  CHECK(t.blocks * t.threads_per_block == 4096 * 16);
  // RX 9060 XT's 64 SIMDs (32 CUs of 2 SIMDs): 128 blocks x 2 = 256 waves.
  CHECK(schedules::gpu_int4_gemv_default(w, gfx1200).get_int("split_k") == 2);
  // A short k keeps at least 64 values a thread.
  w.K = 256;
  CHECK(schedules::gpu_int4_gemv_default(w, gfx942).get_int("split_k") == 4);
  w.K = 128;
  CHECK(schedules::gpu_int4_gemv_default(w, gfx942).get_int("split_k") == 2);
}

TEST_CASE("GPU GEMM: the weight dequantized once a block in LDS takes the float32 GEMM toward its multiply-adds",
          "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  w.M = 128;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value();
  // The default at 128 rows: the weight dequantized once a block, 4 columns a thread, split_k 2.
  const Schedule prefill_default = schedules::gpu_int4_gemm_default(w, gfx942);
  REQUIRE((prefill_default.get_int("tile_m") == 32 && prefill_default.get_int("thread_m") == 4 &&
           prefill_default.get_int("tile_n") == 64 && prefill_default.get_int("thread_n") == 4 &&
           prefill_default.get_string("shared_stage") == "aw_dequant" && prefill_default.get_int("split_k") == 2));
  // Against each thread row dequantizing its 2 columns, the default at fewer rows.
  Schedule s = prefill_default;
  s.knobs["shared_stage"] = std::string("a"), s.knobs["thread_n"] = int64_t(2);
  QMatMulWorkload fewer_rows = w;
  fewer_rows.M = 64;
  CHECK(schedules::gpu_int4_gemm_default(fewer_rows, gfx942).get_string("shared_stage") == "a");
  Schedule dequant = s;
  dequant.knobs["shared_stage"] = std::string("aw_dequant");
  REQUIRE(schedules::gpu_int4_gemm_check(w, dequant, gfx942).ok());
  const KernelTraffic t = schedules::gpu_qmatmul_traffic(w, s), td = schedules::gpu_qmatmul_traffic(w, dequant);
  const double KN = 4096.0 * 4096;
  // 4 row tiles: 4 operations a weight by each of a block's 8 thread rows, or by the block once.
  CHECK(t.valu_ops - td.valu_ops == Approx(4 * (8 - 1) * KN * 4));
  // The block writes its chunk, a float a weight, and each of its 8 thread rows reads it.
  CHECK(td.lds_bytes - t.lds_bytes == Approx(4 * KN * 4 * (1 + 8)));
  CHECK(td.global_bytes == Approx(t.global_bytes));
  // On MI300X, occupancy alike: the ALU time falls to the multiply-adds and an eighth (and the split sums), but with 2
  // columns a thread, 3 LDS bytes a multiply-add (A and the weight) make the LDS the bound; 4 columns a thread take 2,
  // and the estimate's time falls by a third (105 to 70 us).
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const GpuEstimate e = estimate_kernel(t, arch("gfx942"), mi300x, 8),
                    ed = estimate_kernel(td, arch("gfx942"), mi300x, 8);
  CHECK(ed.valu_us == Approx(e.valu_us * (128 + 16 + 1.0 / 16) / (128 + 128 + 1.0 / 16)));
  CHECK(ed.bound == "lds");
  REQUIRE(schedules::gpu_int4_gemm_check(w, prefill_default, gfx942).ok());
  const GpuEstimate ew = estimate_kernel(schedules::gpu_qmatmul_traffic(w, prefill_default), arch("gfx942"), mi300x, 8);
  CHECK(ew.bound == "valu");
  CHECK(ew.time_us < 0.7 * e.time_us);
}

TEST_CASE("GPU int8 GEMM: split in two on MI300X at 128 rows, which doubles its waves and halves the estimate",
          "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  w.M = 128, w.int8_activations = true;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value(), gfx90a = parse_target("hip:gfx90a").value();
  // 4 row tiles of 32 x 64 tiles at 2 x 4 outputs a thread: 256 blocks of 4 waves leave MI300X's 1216 SIMDs
  // less than a wave each, so the default splits; MI210's 416 have one.
  const Schedule split = schedules::gpu_int4_gemm_a8_default(w, gfx942);
  CHECK(split.get_int("split_k") == 2);
  CHECK(schedules::gpu_int4_gemm_a8_default(w, gfx90a).get_int("split_k", 1) == 1);
  // Nor on OpenCL, where no reference GPU's estimate backs a split (schedules/gpu/int4_gemm.cpp says why).
  CHECK(schedules::gpu_int4_gemm_a8_default(w, parse_target("opencl").value()).get_int("split_k", 1) == 1);
  REQUIRE(schedules::gpu_int4_gemm_a8_check(w, split, gfx942).ok());
  Schedule unsplit = split;
  unsplit.knobs["split_k"] = int64_t(1);
  const KernelTraffic t = schedules::gpu_qmatmul_traffic(w, unsplit), ts = schedules::gpu_qmatmul_traffic(w, split);
  // Twice the threads; the partial tiles written and read in LDS, and summed.
  CHECK(ts.threads_per_block == 2 * t.threads_per_block);
  CHECK(ts.lds_bytes - t.lds_bytes == Approx(128.0 * 4096 * 2 * 4 * 2));
  CHECK(ts.valu_ops - t.valu_ops == Approx(128.0 * 4096 * 2));
  CHECK(ts.global_bytes == Approx(t.global_bytes));
  // Latency-bound unsplit: the launched waves are what hide it.
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const GpuEstimate e = estimate_kernel(t, arch("gfx942"), mi300x, 8),
                    es = estimate_kernel(ts, arch("gfx942"), mi300x, 8);
  CHECK(e.bound == "latency");
  CHECK(es.waves_resident == Approx(2 * e.waves_resident));
  CHECK(es.time_us < 0.6 * e.time_us);
}

TEST_CASE("GPU float16 GEMM: the weight's code pairs made once a block in LDS take it toward its dot products",
          "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  w.M = 128, w.f16_activations = true;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value(), gfx90a = parse_target("hip:gfx90a").value();
  // The default at 128 rows: the pairs made once a block, 64 values of k a chunk (2 k-blocks of 32), split in
  // two. On MI210 at 4 x 4 outputs a thread; MI300X's 1216 SIMDs would have less than a wave each from 4 x 4
  // tiles, so 2 x 4 there.
  const Schedule on_mi300x = schedules::gpu_int4_gemm_h2_default(w, gfx942),
                 on_mi210 = schedules::gpu_int4_gemm_h2_default(w, gfx90a);
  for (const Schedule& s : {on_mi300x, on_mi210}) {
    INFO(s.to_string());
    CHECK((s.get_string("shared_stage") == "aw_dequant" && s.get_int("tile_k") == 2 && s.get_int("split_k") == 2 &&
           s.get_int("thread_m") == 4));
  }
  CHECK(on_mi300x.get_int("thread_n") == 2);
  CHECK(on_mi210.get_int("thread_n") == 4);
  // From 256 rows MI300X has the waves for 4 x 4; below 128 rows each thread row makes its own pairs.
  QMatMulWorkload more_rows = w, fewer_rows = w;
  more_rows.M = 256, fewer_rows.M = 64;
  CHECK(schedules::gpu_int4_gemm_h2_default(more_rows, gfx942).get_int("thread_n") == 4);
  CHECK(schedules::gpu_int4_gemm_h2_default(fewer_rows, gfx942).get_string("shared_stage", "a") == "a");
  // Against each thread row making its own pairs, at the same tiles.
  Schedule per_row = on_mi300x;
  per_row.knobs["shared_stage"] = std::string("a");
  const KernelTraffic t = schedules::gpu_qmatmul_traffic(w, per_row), ts = schedules::gpu_qmatmul_traffic(w, on_mi300x);
  const double words = 4096.0 * 4096 / 8;
  // 4 row tiles: 13 operations a word by each of a block's 8 thread rows, or by the block once.
  CHECK(t.valu_ops - ts.valu_ops == Approx(4 * (8 - 1) * words * 13));
  // The block writes its chunk's pairs, 16 bytes a word, and each of its 8 thread rows reads them.
  CHECK(ts.lds_bytes - t.lds_bytes == Approx(4 * words * 16 * (1 + 8)));
  CHECK(ts.global_bytes == Approx(t.global_bytes));
  // The estimate: at 2 x 4 the pairs' 16 bytes a word and row tile make the LDS the bound on MI300X; at 4 x 4 on
  // MI210 the ALU is, and the time falls by a third.
  REQUIRE(schedules::gpu_int4_gemm_h2_check(w, on_mi300x, gfx942).ok());
  REQUIRE(schedules::gpu_int4_gemm_h2_check(w, on_mi210, gfx90a).ok());
  const GpuEstimate e = estimate_kernel(t, arch("gfx942"), *reference_gpu("gfx942"), 6),
                    es = estimate_kernel(ts, arch("gfx942"), *reference_gpu("gfx942"), 6);
  CHECK(es.bound == "lds");
  CHECK(es.time_us < 0.85 * e.time_us);
  // (Against the default below 128 rows: 2 x 4, 128 values of k a chunk, unsplit, 6 waves a SIMD; the new
  // default has registers for 3.)
  Schedule per_row_mi210 = on_mi210;
  per_row_mi210.knobs["shared_stage"] = std::string("a"), per_row_mi210.knobs["thread_n"] = int64_t(2);
  per_row_mi210.knobs["tile_k"] = int64_t(4), per_row_mi210.knobs.erase("split_k");
  const GpuEstimate e210 = estimate_kernel(schedules::gpu_qmatmul_traffic(w, per_row_mi210), arch("gfx90a"),
                                           *reference_gpu("gfx90a"), 6),
                    es210 = estimate_kernel(schedules::gpu_qmatmul_traffic(w, on_mi210), arch("gfx90a"),
                                            *reference_gpu("gfx90a"), 3);
  CHECK(es210.bound == "valu");
  CHECK(es210.time_us < 0.7 * e210.time_us);
}

TEST_CASE("GPU GEMVs read A's row once per block of columns, and the float16 lanes' GEMV fills MI300X by the estimate",
          "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  w.f16_activations = true;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value();
  const double a_bytes = 4096.0 * 4;
  // Every GEMV's blocks each read A's row: the split-k GEMV's 64 panels, the lanes' GEMVs' blocks of 16
  // columns; once from memory, the rest from L2.
  const Schedule split = schedules::gpu_int4_gemv_h2_default(w, gfx942),
                 lanes = schedules::gpu_int4_gemv_h2_wave_default(w, gfx942);
  REQUIRE(lanes.get_int("columns") == 16);
  for (const auto& [s, blocks] :
       {std::pair{split, 64}, {lanes, 256}, {schedules::gpu_int4_gemv_wave_default(w, gfx942), 256}}) {
    INFO(s.to_string());
    const KernelTraffic t = schedules::gpu_qmatmul_traffic(w, s);
    CHECK(t.blocks == blocks);
    REQUIRE(t.rereads.size() == 2);
    CHECK(t.rereads[0].bytes == 0);  // the weight, once
    CHECK(t.rereads[1].bytes == Approx((blocks - 1) * a_bytes));
  }
  // The lanes' float16 GEMV: the split-k one's operations; in LDS the row of A written by each block and
  // read by each column's lanes, no partial sums; a wave a column.
  const KernelTraffic t_lanes = schedules::gpu_qmatmul_traffic(w, lanes),
                      t_split = schedules::gpu_qmatmul_traffic(w, split);
  CHECK(t_lanes.valu_ops == Approx(t_split.valu_ops));
  CHECK(t_lanes.lds_bytes == Approx(256 * 4096.0 * 2 + 4096 * 4096.0 * 2));
  CHECK(t_lanes.threads_per_block == 64 * 16);
  // MI300X: 256 blocks of 16 waves give 3.4 waves a SIMD, where the split-k default's 64 blocks use 64 of
  // its 304 CUs; by the estimate, at 8 waves a SIMD each, more than 3x faster.
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double lanes_us = estimate_kernel(t_lanes, arch("gfx942"), mi300x, 8).time_us;
  const double split_us = estimate_kernel(t_split, arch("gfx942"), mi300x, 8).time_us;
  CHECK(lanes_us * 3 < split_us);
  // Its knobs: a column's lanes in one wave, whole waves a block, thread_n dividing the columns.
  Schedule wide = lanes;
  wide.knobs["lanes"] = int64_t(64);
  CHECK_FALSE(schedules::gpu_int4_gemv_h2_wave_check(w, wide, parse_target("hip:gfx1100").value()).ok());
  Schedule partial = lanes;
  partial.knobs["lanes"] = int64_t(16), partial.knobs["columns"] = int64_t(2);
  CHECK_FALSE(schedules::gpu_int4_gemv_h2_wave_check(w, partial, gfx942).ok());
  QMatMulWorkload f32 = w;
  f32.f16_activations = false;
  CHECK_FALSE(schedules::gpu_int4_gemv_h2_wave_check(f32, lanes, gfx942).ok());
}

TEST_CASE("the int8 lanes' GEMV: the split-k int8 GEMV's operations, A staged as int8, MI300X filled by the estimate",
          "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  w.int8_activations = true;
  const TargetSpec gfx942 = parse_target("hip:gfx942").value();
  const Schedule split = schedules::gpu_int4_gemv_a8_default(w, gfx942),
                 lanes = schedules::gpu_int4_gemv_a8_wave_default(w, gfx942);
  const KernelTraffic t_lanes = schedules::gpu_qmatmul_traffic(w, lanes),
                      t_split = schedules::gpu_qmatmul_traffic(w, split);
  CHECK(t_lanes.valu_ops == Approx(t_split.valu_ops));
  // A wave a column, 16 columns a block; in LDS the int8 row of A written by each block and read by each
  // column's lanes, no partial sums.
  CHECK(t_lanes.blocks == 256);
  CHECK(t_lanes.threads_per_block == 64 * 16);
  CHECK(t_lanes.lds_bytes == Approx(256 * 4096.0 + 4096 * 4096.0));
  const GpuDevice& mi300x = *reference_gpu("gfx942");
  const double lanes_us = estimate_kernel(t_lanes, arch("gfx942"), mi300x, 8).time_us;
  const double split_us = estimate_kernel(t_split, arch("gfx942"), mi300x, 8).time_us;
  // MI300X: 256 blocks of 16 waves, against the split-k default's 64 blocks (2.5 against 9.5 us).
  CHECK(lanes_us * 3 < split_us);
  // Its activations: int8 only.
  QMatMulWorkload f16 = w, f32 = w;
  f16.int8_activations = false, f16.f16_activations = true;
  f32.int8_activations = false;
  CHECK_FALSE(schedules::gpu_int4_gemv_a8_wave_check(f16, lanes, gfx942).ok());
  CHECK_FALSE(schedules::gpu_int4_gemv_a8_wave_check(f32, lanes, gfx942).ok());
  CHECK(schedules::gpu_int4_gemv_a8_wave_check(w, lanes, gfx942).ok());
}

TEST_CASE("the estimate runner builds a GPU candidate and ranks it without running it", "[gpu]") {
  QMatMulWorkload w = decode_gemv_4096();
  TargetSpec gfx942 = parse_target("hip:gfx942").value();
  tuner::MeasureJob job;
  job.qmatmul = w;
  job.target = gfx942.name;
  job.schedule = schedules::gpu_int4_gemv_default(w, gfx942);
  tuner::EstimateRunner runner((std::filesystem::temp_directory_path() / "tetra_estimate_test").string());
  tuner::MeasureResult r = runner.run(job);
  INFO(r.error);
  REQUIRE(r.ok);
  CHECK(r.runs == 0);  // nothing was timed
  CHECK(r.median_ms > 0);
  CHECK(r.median_ms < 1.0);  // microseconds on MI300X, not milliseconds
  // One column per thread and no split of k launches 64 waves: slower by the estimate.
  job.schedule.knobs["split_k"] = int64_t(1);
  tuner::MeasureResult unsplit = runner.run(job);
  REQUIRE(unsplit.ok);
  CHECK(unsplit.median_ms > r.median_ms);
  // Failures are results naming the cause.
  job.schedule.knobs["split_k"] = int64_t(32);
  tuner::MeasureResult illegal = runner.run(job);
  CHECK_FALSE(illegal.ok);
  CHECK_THAT(illegal.error, Catch::Contains("split_k"));
  job.schedule = schedules::gpu_int4_gemv_default(w, gfx942);
  job.target = "x86-64-avx2";
  CHECK_FALSE(runner.run(job).ok);
}
