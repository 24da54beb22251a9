// The static estimate of a GPU kernel's time on a device tetra cannot run: what ranks candidates for an
// arch without that GPU, and what says whether a kernel is memory-bound there. No libHalide.
//
// A template gives a kernel's traffic: bytes moved to and from global memory, vector ALU operations
// (per lane) and workgroup-memory (LDS) bytes read. Against a reference device of the arch:
//   memory = global bytes / bandwidth
//   cache  = re-read bytes whose operand fits in L2 / (CUs x 64 bytes a clock x clock)
//   valu   = ALU operations / (CUs x 64 lanes x clock)       (fp32, unpacked, one issue a clock)
//   lds    = LDS bytes / (CUs x 128 bytes a clock x clock)
//   loads  = bytes returned to the lanes by global loads / (CUs x 64 bytes a clock x clock)
// Global bytes are what must come from memory (each operand once, the output once). A tiled kernel
// also reads an operand again once per tile of the other dimension; those re-reads hit L2 when the
// operand fits in it, and otherwise count as global bytes. (The Infinity Cache behind L2 on MI300 and
// RDNA is not modelled: re-reads past L2 are charged at memory bandwidth.)
// Latency is hidden with about 4 resident waves per SIMD, so memory and cache time are divided by
// min(1, waves resident per SIMD / 4), where the waves resident are the occupancy, or fewer when the
// grid is too small to give every SIMD that many; ALU and LDS time are divided by the fraction of the
// SIMDs the grid fills. A block's waves share one CU's SIMDs (on RDNA one WGP's), so a grid of fewer blocks
// than CUs fills only blocks x min(SIMDs a CU, waves a block) of them. The grid's waves count as busy ones
// only (KernelTraffic::busy). A block of fewer threads than its waves' lanes uses only that share of them,
// as do tiles past the output's innermost edge (KernelTraffic::lanes_busy): ALU and LDS time are divided
// by it, and so is the latency hidden.
// The loads term counts every lane's bytes: the memory and cache bytes, and the bytes a block's threads load again
// after another of its threads loaded them, which its CU's vector cache (L1) serves (KernelTraffic::repeated_loads),
// as each thread row of a GEMM loading the block's weight words, or each conv thread its own inputs. The vector cache
// returns 64 bytes a clock however many lanes share them (gfx9's figure, taken for every arch); its time is divided by
// the fraction of the CUs the grid's blocks fill. The estimate is the largest of the four (memory and cache time
// together), and names it: "memory", "valu", "lds", "loads", or "latency" when memory time is largest only because too
// few waves are resident.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsl/core/amd_arch.h"

namespace tetra::dsl {

// A GPU's public figures.
struct GpuDevice {
  const char* name;      // "MI300X"
  const char* arch;      // "gfx942"
  int cus;               // compute units
  double clock_ghz;      // peak engine clock
  double bandwidth_gbs;  // peak memory bandwidth, GB/s
  double l2_mib;         // the L2 a block's reads go through (per XCD on MI300X)
};

// Reference devices, one or more per arch in amd_arch_table(); the first of an arch is its reference.
const std::vector<GpuDevice>& reference_gpus();
const GpuDevice* reference_gpu(const std::string& arch);

// Reads of an operand beyond the first, by the blocks of other tiles: a cache serves them when the whole
// operand fits in it.
struct Reread {
  double bytes = 0;          // all the repeated reads together
  double operand_bytes = 0;  // what must stay cached for them to hit
};

struct KernelTraffic {
  double global_bytes = 0, valu_ops = 0, lds_bytes = 0;
  std::vector<Reread> rereads;
  // Bytes the threads of a block load again after another of its threads loaded them: the CU's vector cache
  // serves them, but returns each lane's bytes through its own 64 bytes a clock.
  double repeated_loads = 0;
  int64_t blocks = 0, threads_per_block = 0;
  // The share of the launched waves that compute an output: tiles that run past the output's edge in an
  // outer thread dimension (rows, channels) leave whole waves idle, and idle waves hide no latency.
  double busy = 1;
  // The share of a running wave's lanes that compute an output: tiles past the edge in the innermost
  // thread dimension (columns) leave lanes idle in every wave, each still issuing every instruction.
  double lanes_busy = 1;
};

struct GpuEstimate {
  std::string device;
  double memory_us = 0, cache_us = 0, valu_us = 0, lds_us = 0, loads_us = 0;
  double waves_resident = 0;  // per SIMD
  double time_us = 0;
  std::string bound;  // "memory", "latency", "valu", "lds" or "loads"
  nlohmann::json to_json() const;
};

GpuEstimate estimate_kernel(const KernelTraffic& traffic, const AmdArch& arch, const GpuDevice& device,
                            int waves_per_simd);

}  // namespace tetra::dsl
