#include "dsl/core/amd_arch.h"

#include <algorithm>

namespace tetra::dsl {

const std::vector<AmdArch>& amd_arch_table() {
  // RDNA counts are in wave32, tetra's wave size there. RDNA runs in WGP mode: two CUs (4 SIMDs) share
  // 128 KiB of LDS. gfx11 and gfx12 have the 1.5x register file (1536, granule 24); gfx10.3 1024 (16).
  static const std::vector<AmdArch> table = {
      {"gfx906", "GCN5 (MI50/MI60)", 64, 10, 256, 4, false, 65536, 4, 1, Int8Dot4::Signed},
      {"gfx908", "CDNA1 (MI100)", 64, 10, 256, 4, false, 65536, 4, 1, Int8Dot4::Signed},
      {"gfx90a", "CDNA2 (MI210/MI250)", 64, 8, 512, 8, true, 65536, 4, 1, Int8Dot4::Signed},
      {"gfx942", "CDNA3 (MI300)", 64, 8, 512, 8, true, 65536, 4, 1, Int8Dot4::Signed},
      {"gfx1030", "RDNA2 (RX 6800/6900)", 32, 16, 1024, 16, false, 131072, 4, 2, Int8Dot4::Signed},
      {"gfx1100", "RDNA3 (RX 7900)", 32, 16, 1536, 24, false, 131072, 4, 2, Int8Dot4::Mixed},
      {"gfx1101", "RDNA3 (RX 7800/7700)", 32, 16, 1536, 24, false, 131072, 4, 2, Int8Dot4::Mixed},
      {"gfx1151", "RDNA3.5 (Strix Halo)", 32, 16, 1536, 24, false, 131072, 4, 2, Int8Dot4::Mixed},
      {"gfx1200", "RDNA4 (RX 9060)", 32, 16, 1536, 24, false, 131072, 4, 2, Int8Dot4::Mixed},
      {"gfx1201", "RDNA4 (RX 9070)", 32, 16, 1536, 24, false, 131072, 4, 2, Int8Dot4::Mixed},
  };
  return table;
}

const char* int8_dot4_macro(const AmdArch& arch) {
  return arch.int8_dot4 == Int8Dot4::Signed ? "TETRA_SDOT4" : "TETRA_SUDOT4";
}

int block_units_of(const AmdArch& arch, int cus) { return cus / arch.cus_per_lds; }

int simds_of(const AmdArch& arch, int cus) { return block_units_of(arch, cus) * arch.simds_per_cu; }

const AmdArch* find_amd_arch(const std::string& name) {
  for (const AmdArch& a : amd_arch_table())
    if (name == a.name) return &a;
  return nullptr;
}

Status check_amd_arch(const std::string& name) {
  if (find_amd_arch(name)) return ok_status();
  std::string known;
  for (const AmdArch& a : amd_arch_table()) known += std::string(known.empty() ? "" : ", ") + a.name;
  return Failure{FailureKind::Unsupported, name, "tetra builds GPU kernels for " + known};
}

int waves_per_simd(const AmdArch& arch, int vgprs, int agprs, int lds_bytes, int threads_per_block) {
  auto align = [](int n, int granule) { return (std::max(n, 1) + granule - 1) / granule * granule; };
  int registers = arch.unified_agprs ? align(vgprs, 4) + agprs : std::max(vgprs, agprs);
  int waves = std::min(arch.max_waves_per_simd, std::max(1, arch.total_vgprs / align(registers, arch.vgpr_granule)));
  if (lds_bytes > 0) {
    int waves_per_block = (std::max(threads_per_block, 1) + arch.wavefront - 1) / arch.wavefront;
    int blocks_per_cu = arch.lds_per_cu / lds_bytes;  // 0: the block's LDS does not fit
    waves = std::min(waves, (blocks_per_cu * waves_per_block + arch.simds_per_cu - 1) / arch.simds_per_cu);
  }
  return waves;
}

}  // namespace tetra::dsl
