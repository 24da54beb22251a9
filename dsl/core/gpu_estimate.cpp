#include "dsl/core/gpu_estimate.h"

#include <algorithm>

namespace tetra::dsl {

const std::vector<GpuDevice>& reference_gpus() {
  // Vendor specifications: compute units, peak engine clock, peak memory bandwidth, L2 size.
  static const std::vector<GpuDevice> devices = {
      {"MI50", "gfx906", 60, 1.725, 1024, 4},      {"MI100", "gfx908", 120, 1.502, 1229, 8},
      {"MI210", "gfx90a", 104, 1.7, 1638, 8},      {"MI300X", "gfx942", 304, 2.1, 5300, 4},
      {"RX 6900 XT", "gfx1030", 80, 2.25, 512, 4}, {"RX 7900 XTX", "gfx1100", 96, 2.5, 960, 6},
      {"RX 7800 XT", "gfx1101", 60, 2.43, 624, 4}, {"Ryzen AI Max+ 395", "gfx1151", 40, 2.9, 256, 2},
      {"RX 9060 XT", "gfx1200", 32, 3.13, 320, 4}, {"RX 9070 XT", "gfx1201", 64, 2.97, 640, 8},
  };
  return devices;
}

const GpuDevice* reference_gpu(const std::string& arch) {
  for (const GpuDevice& d : reference_gpus())
    if (arch == d.arch) return &d;
  return nullptr;
}

nlohmann::json GpuEstimate::to_json() const {
  return {{"device", device}, {"memory_us", memory_us}, {"cache_us", cache_us}, {"valu_us", valu_us},
          {"lds_us", lds_us}, {"loads_us", loads_us},   {"time_us", time_us},   {"waves_resident", waves_resident},
          {"bound", bound}};
}

GpuEstimate estimate_kernel(const KernelTraffic& t, const AmdArch& arch, const GpuDevice& device, int waves_per_simd) {
  // A CU's vector cache fills 64 bytes a clock from L2, and returns 64 bytes a clock to the lanes (gfx9's
  // figures, taken for every arch).
  constexpr double kLanesPerCu = 64, kLdsBytesPerClock = 128, kL2BytesPerClock = 64, kL1BytesPerClock = 64,
                   kWavesToHideLatency = 4;
  GpuEstimate e;
  e.device = device.name;
  const double clock_per_us = device.clock_ghz * 1e3;
  double memory_bytes = t.global_bytes, cache_bytes = 0;
  for (const Reread& r : t.rereads)
    (r.operand_bytes <= device.l2_mib * 1024 * 1024 ? cache_bytes : memory_bytes) += r.bytes;
  e.memory_us = memory_bytes / (device.bandwidth_gbs * 1e3);
  e.cache_us = cache_bytes / (device.cus * kL2BytesPerClock * clock_per_us);
  e.valu_us = t.valu_ops / (device.cus * kLanesPerCu * clock_per_us);
  e.lds_us = t.lds_bytes / (device.cus * kLdsBytesPerClock * clock_per_us);
  e.loads_us = (memory_bytes + cache_bytes + t.repeated_loads) / (device.cus * kL1BytesPerClock * clock_per_us);
  const double simds = simds_of(arch, device.cus);
  const double waves_per_block = double((t.threads_per_block + arch.wavefront - 1) / arch.wavefront);
  const double waves = double(t.blocks) * waves_per_block * std::min(1.0, t.busy);
  // A block of fewer threads than its waves' lanes (16 threads in a 64-wide wave) leaves the rest idle:
  // each instruction costs a whole wave's issue, and keeps only that share of loads in flight.
  const double lanes_used =
      double(t.threads_per_block) / (waves_per_block * arch.wavefront) * std::min(1.0, t.lanes_busy);
  e.waves_resident = std::min(double(waves_per_simd), waves / simds);
  const double latency_hidden = std::min(1.0, e.waves_resident * lanes_used / kWavesToHideLatency);
  // A block runs on one CU (on RDNA, one WGP), its waves on that CU's SIMDs only: a grid of fewer blocks
  // than CUs leaves the other CUs idle, however many waves each block has.
  const double units = block_units_of(arch, device.cus), units_used = std::min(double(t.blocks), units);
  const double simds_busy = units_used > 0 ? units_used * std::min(double(arch.simds_per_cu), waves / units_used) : 0;
  const double filled = std::min(1.0, simds_busy / simds) * lanes_used;
  const double memory = latency_hidden > 0 ? (e.memory_us + e.cache_us) / latency_hidden : 1e30;
  const double valu = filled > 0 ? e.valu_us / filled : 1e30;
  const double lds = filled > 0 ? e.lds_us / filled : 1e30;
  // Each CU's vector cache serves the blocks on that CU (on RDNA, a block's WGP has two), however few their
  // waves: only the CUs the grid fills count. (Idle lanes load nothing: the bytes are the busy lanes' already.)
  const double cus_filled = units_used / units;
  const double loads = cus_filled > 0 ? e.loads_us / cus_filled : 1e30;
  e.time_us = std::max({memory, valu, lds, loads});
  // Memory time that too few waves stretch is latency, not bandwidth: more parallelism is the remedy.
  e.bound = e.time_us == memory ? (latency_hidden < 1 ? "latency" : "memory")
            : e.time_us == valu ? "valu"
            : e.time_us == lds  ? "lds"
                                : "loads";
  return e;
}

}  // namespace tetra::dsl
