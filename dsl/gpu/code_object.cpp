#include "dsl/gpu/code_object.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dsl/core/amd_arch.h"
#include "dsl/process.h"

namespace tetra::dsl::gpu {

namespace fs = std::filesystem;

const std::vector<std::string>& amd_archs() {
  static const std::vector<std::string> archs = [] {
    std::vector<std::string> names;
    for (const AmdArch& a : amd_arch_table()) names.push_back(a.name);
    return names;
  }();
  return archs;
}

Result<std::string> device_compiler() {
  const char* chosen = std::getenv("TETRA_CLANG");
  std::string clang = chosen && *chosen ? chosen : "clang-19";
  ProgramRun run = run_program({clang, "--version"});
  if (!run.ok())
    return Failure{FailureKind::Unsupported, clang,
                   "cannot run it; GPU code needs clang-19 and lld-19 (Debian: apt install clang-19 lld-19)"};
  return clang;
}

Result<std::string> device_compiler_version() {
  Result<std::string> clang = device_compiler();
  if (!clang) return clang.failure();
  ProgramRun run = run_program({clang.value(), "--version"});
  // "Debian clang version 19.1.7 (3+b1)" or "clang version 19.1.7 (...)".
  size_t at = run.output.find("clang version ");
  if (!run.ok() || at == std::string::npos)
    return Failure{FailureKind::Unsupported, clang.value(), "cannot read its version:\n" + run.output};
  std::string version = run.output.substr(at + 14);
  return "clang-" + version.substr(0, version.find_first_of(" \n"));
}

namespace {

// Compiles `source` (written beside `path` with `extension`) with `flags`; the compiler's output is in
// the Failure.
Status compile(const std::string& source, const std::string& extension, const std::vector<std::string>& flags,
               const std::string& path, const std::string& what) {
  Result<std::string> clang = device_compiler();
  if (!clang) return clang.failure();
  std::string source_path = path + extension;
  {
    std::ofstream out(source_path, std::ios::binary);
    out << source;
    if (!out) return Failure{FailureKind::Compile, source_path, "cannot write the source"};
  }
  std::vector<std::string> argv = {clang.value()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {"-o", path, source_path});
  ProgramRun run = run_program(argv);
  std::error_code ec;
  fs::remove(source_path, ec);
  if (!run.ok()) return Failure{FailureKind::Compile, what, describe_command(argv) + " failed:\n" + run.output};
  return ok_status();
}

}  // namespace

Status build_hip_code_object(const std::string& source, const std::string& arch, const std::string& path) {
  const AmdArch* facts = find_amd_arch(arch);
  if (!facts) return check_amd_arch(arch);
  // The source is the same for every arch; what an arch's instructions change is chosen here, from its facts.
  return compile(
      source, ".hip",
      {"-x", "hip", "--offload-device-only", "--offload-arch=" + arch, "--no-gpu-bundle-output", "-nogpulib",
       "-nogpuinc", "-O3", "-std=c++17", "-mcode-object-version=4", std::string("-D") + int8_dot4_macro(*facts)},
      path, arch);
}

namespace {
// The oldest PTX ISA that has `sm` ("sm_80"), and 6.0 at least (the *.sync warp shuffles): the PTX runs on
// every driver that knows the GPU. clang would take the version from a CUDA toolkit it finds, and without
// one, 4.2, which has no shuffles; so the PTX is the same with or without a toolkit installed.
std::string ptx_isa_feature(const std::string& sm) {
  const int n = std::atoi(sm.c_str() + (sm.rfind("sm_", 0) == 0 ? 3 : 0));
  const int isa = n >= 89 ? 78 : n >= 87 ? 74 : n >= 86 ? 71 : n >= 80 ? 70 : n >= 75 ? 63 : 60;
  return "+ptx" + std::to_string(isa);
}
}  // namespace

Status build_ptx(const std::string& source, const std::string& sm, const std::string& path) {
  // No CUDA toolkit is looked for (the kernels need none of its headers or libraries).
  return compile(source, ".cu",
                 {"-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=" + sm, "--cuda-path=/nonexistent", "-nocudainc",
                  "-nocudalib", "-Xclang", "-target-feature", "-Xclang", ptx_isa_feature(sm), "-O3", "-std=c++17", "-S",
                  "-Wno-unknown-cuda-version"},
                 path, sm);
}

Result<std::vector<KernelResources>> read_kernel_resources(const std::string& code_object) {
  Result<std::string> clang = device_compiler();
  if (!clang) return clang.failure();
  // llvm-readelf-19 beside clang-19.
  std::string readelf = "llvm-readelf" + clang.value().substr(clang.value().find("clang") + 5);
  ProgramRun run = run_program({readelf, "--notes", code_object});
  if (!run.ok()) return Failure{FailureKind::Compile, code_object, "llvm-readelf failed:\n" + run.output};
  // The notes list the kernels in YAML: each entry starts "  - .field: value" and its other fields are
  // indented to the same column; deeper lines (the arguments' own lists) are not the kernel's.
  std::vector<KernelResources> kernels;
  bool in_kernels = false;
  size_t field_column = std::string::npos;
  std::istringstream lines(run.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("amdhsa.kernels:") != std::string::npos) {
      in_kernels = true;
      continue;
    }
    if (!in_kernels) continue;
    if (line.rfind("amdhsa.", 0) == 0) break;  // the list ended
    size_t dot = line.find('.');
    size_t colon = line.find(':', dot == std::string::npos ? 0 : dot);
    if (dot == std::string::npos || colon == std::string::npos) continue;
    const size_t dash = line.find("- ");
    if (dash != std::string::npos && dash + 2 == dot && (field_column == std::string::npos || dot == field_column)) {
      field_column = dot;  // a new kernel entry
      kernels.emplace_back();
    }
    if (kernels.empty() || dot != field_column) continue;
    std::string key = line.substr(dot + 1, colon - dot - 1);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    KernelResources& k = kernels.back();
    auto number = [&] { return std::atoi(value.c_str()); };
    if (key == "name")
      k.name = value;
    else if (key == "vgpr_count")
      k.vgprs = number();
    else if (key == "sgpr_count")
      k.sgprs = number();
    else if (key == "agpr_count")
      k.agprs = number();
    else if (key == "vgpr_spill_count")
      k.vgpr_spills = number();
    else if (key == "sgpr_spill_count")
      k.sgpr_spills = number();
    else if (key == "group_segment_fixed_size")
      k.lds_bytes = number();
    else if (key == "private_segment_fixed_size")
      k.scratch_bytes = number();
    else if (key == "wavefront_size")
      k.wavefront = number();
    else if (key == "max_flat_workgroup_size")
      k.max_threads_per_block = number();
  }
  if (kernels.empty()) return Failure{FailureKind::Compile, code_object, "no kernel metadata in its notes"};
  return kernels;
}

Result<std::string> write_device_program(const std::vector<DeviceKernel>& kernels, Dialect dialect,
                                         const std::string& arch, const std::string& dir,
                                         const std::function<std::string(const std::string&)>& edit) {
  Result<std::string> source = emit_kernels(kernels, dialect);
  if (!source) return source.failure();
  const std::string text = edit ? edit(source.value()) : source.value();
  const std::string file = dialect == Dialect::OpenCL ? "kernels.cl"
                           : dialect == Dialect::Cuda ? "kernels.ptx"
                                                      : "kernels.co";
  const std::string path = (std::filesystem::path(dir) / file).string();
  if (dialect == Dialect::OpenCL) {
    std::ofstream out(path);
    out << text;
    if (!out) return Failure{FailureKind::Run, path, "cannot write the OpenCL program"};
    return file;
  }
  Status built = dialect == Dialect::Cuda ? build_ptx(text, arch, path) : build_hip_code_object(text, arch, path);
  if (!built) return built.failure();
  return file;
}

}  // namespace tetra::dsl::gpu
