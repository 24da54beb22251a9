// Device code from emitted sources, with one compiler for every arch: Debian's clang-19 and lld-19
// (ROCm 5.2's clang-15 rejects gfx942 and gfx1201). AMD code objects are built at code-object version 4,
// the version the HIP runtime of ROCm 5.2 (Debian's libamdhip64-5) loads; CUDA sources become PTX.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "dsl/core/result.h"
#include "dsl/gpu/emit_kernel.h"

namespace tetra::dsl::gpu {

// The AMD archs tetra builds for (dsl/core/amd_arch.h): CDNA (gfx906 .. gfx942) and RDNA 2-4 (gfx1030 ..
// gfx1201).
const std::vector<std::string>& amd_archs();

// The compiler, "clang-19" unless TETRA_CLANG names another; Failure when it cannot run.
Result<std::string> device_compiler();
// Its version, "clang-19.1.7": part of what a built kernel depends on.
Result<std::string> device_compiler_version();

// Builds HIP `source` (emit_kernels' Dialect::Hip) into an AMD code object for `arch` at `path`.
Status build_hip_code_object(const std::string& source, const std::string& arch, const std::string& path);
// Builds CUDA `source` into PTX for `sm` ("sm_80") at `path`.
Status build_ptx(const std::string& source, const std::string& sm, const std::string& path);

// `kernels` as the program a device of `dialect` loads, written into the folder `dir`: OpenCL C
// (kernels.cl), an AMD code object for `arch` (kernels.co) or PTX for `arch` (kernels.ptx). `edit`, when
// given, rewrites the emitted source first (the tuner's fault tests). Returns the file's name.
Result<std::string> write_device_program(const std::vector<DeviceKernel>& kernels, Dialect dialect,
                                         const std::string& arch, const std::string& dir,
                                         const std::function<std::string(const std::string&)>& edit = nullptr);

// What one kernel of a code object uses, from its metadata notes (llvm-readelf --notes).
struct KernelResources {
  std::string name;
  int vgprs = 0, sgprs = 0, agprs = 0;
  int vgpr_spills = 0, sgpr_spills = 0;
  int lds_bytes = 0, scratch_bytes = 0;  // workgroup (LDS) and per-lane private memory
  int wavefront = 0;
  int max_threads_per_block = 0;  // what the code was compiled for: the emitted launch bound, else 1024
  int waves_per_simd = 0;         // occupancy (dsl/core/amd_arch.h), set where the block size is known
};
Result<std::vector<KernelResources>> read_kernel_resources(const std::string& code_object);

}  // namespace tetra::dsl::gpu
