// What tetra knows of each AMD GPU architecture it builds for: the facts occupancy and the static
// estimate need, in one table (LLVM's AMDGPU backend gives the register files and granules; AMD's ISA
// manuals the LDS sizes). No libHalide: model libraries and tetra-device read it too.
//
// Occupancy (waves resident per SIMD) is the least of three limits:
//   registers:  total_vgprs / align(vgprs used, vgpr_granule)           (at most max_waves_per_simd)
//               on gfx90a/gfx942 AGPRs share the file: align(vgprs, 4) + agprs
//   LDS:        floor(lds_per_cu / lds_bytes) workgroups per CU, each of ceil(threads / wavefront)
//               waves, spread over simds_per_cu SIMDs
//   the arch:   max_waves_per_simd
// SGPRs do not limit occupancy on these archs at the counts tetra's kernels use (<= 80 on gfx9).
#pragma once
#include <string>
#include <vector>

#include "dsl/core/result.h"

namespace tetra::dsl {

// The 4-way int8 dot product into int32 an arch has (the int8-activation GPU kernels' inner step).
enum class Int8Dot4 {
  Signed,  // v_dot4_i32_i8 (__builtin_amdgcn_sdot4): gfx906 .. gfx942 and gfx1030
  Mixed,   // v_dot4_i32_iu8 (__builtin_amdgcn_sudot4), each operand's signedness a flag: gfx11, gfx12
};

struct AmdArch {
  const char* name;               // "gfx942"
  const char* family;             // "CDNA3", "RDNA3", ...
  int wavefront;                  // threads per wave
  int max_waves_per_simd;         // 10 on gfx906/gfx908, 8 on gfx90a/gfx942, 16 on gfx10.3+
  int total_vgprs;                // per SIMD lane, in registers of one wave
  int vgpr_granule;               // allocation unit
  bool unified_agprs;             // AGPRs count against the same file (gfx90a, gfx942)
  int lds_per_cu;                 // bytes shared by the workgroups resident on one CU (a WGP on RDNA)
  int simds_per_cu;               // SIMDs sharing that LDS
  int cus_per_lds;                // CUs sharing it: 1, or on RDNA 2 (a WGP: two CUs of 2 SIMDs each)
  Int8Dot4 int8_dot4;             // checked against clang-19 by tests/halide/test_gpu_int8.cpp
  int lds_per_workgroup = 65536;  // the most one workgroup may allocate
};

// Every arch tetra builds code objects for, CDNA then RDNA, oldest first.
const std::vector<AmdArch>& amd_arch_table();
// The entry for `name` ("gfx942"), or nullptr.
const AmdArch* find_amd_arch(const std::string& name);

// The clang macro that selects the arch's int8 dot product in the emitted HIP (dsl/gpu/emit_kernel.cpp):
// "TETRA_SDOT4" or "TETRA_SUDOT4".
const char* int8_dot4_macro(const AmdArch& arch);

// Refuses an arch not in the table, naming those that are.
Status check_amd_arch(const std::string& name);

// What one block runs on, all its waves together, in a GPU of `cus` compute units (vendors count CUs, also
// on RDNA): a CU, or on RDNA a WGP of two.
int block_units_of(const AmdArch& arch, int cus);
// The SIMDs of such a GPU.
int simds_of(const AmdArch& arch, int cus);

// Waves of one kernel resident per SIMD, by the rules above, for blocks of `threads_per_block`; 0 when
// one block's LDS does not fit.
int waves_per_simd(const AmdArch& arch, int vgprs, int agprs, int lds_bytes, int threads_per_block);

}  // namespace tetra::dsl
