#include "dsl/target.h"

#include "importer/error.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define TETRA_X86_HOST 1
#endif

#ifndef TETRA_HALIDE_VERSION
#define TETRA_HALIDE_VERSION "14"
#endif

namespace tetra::dsl {

std::string family_name(TargetFamily family) {
  switch (family) {
    case TargetFamily::Cpu: return "cpu";
    case TargetFamily::Hip: return "hip";
    case TargetFamily::Cuda: return "cuda";
    case TargetFamily::OpenCL:
      return "opencl";
  }
  return "?";
}

bool templates_serve(TargetFamily template_family, TargetFamily target_family) {
  const bool gpu_template = template_family != TargetFamily::Cpu, gpu_target = target_family != TargetFamily::Cpu;
  return gpu_template == gpu_target;
}

std::string opencl_target_name(const std::string& device_name) {
  std::string name = "opencl";
  bool gap = true;
  for (unsigned char ch : device_name) {
    if (std::isalnum(ch)) {
      if (gap) name += '-';
      name += char(std::tolower(ch));
      gap = false;
    } else {
      gap = true;
    }
  }
  return name;
}

std::string CpuFeatures::describe() const {
  std::vector<std::pair<bool, const char*>> all = {
      {sse41, "sse41"},           {avx, "avx"},           {avx2, "avx2"},
      {fma, "fma"},               {f16c, "f16c"},         {avx512f, "avx512f"},
      {avx512cd, "avx512cd"},     {avx512vl, "avx512vl"}, {avx512bw, "avx512bw"},
      {avx512dq, "avx512dq"},     {avx512ifma, "avx512ifma"}, {avx512vbmi, "avx512vbmi"},
      {avx512vnni, "avx512vnni"}, {avx512bf16, "avx512bf16"}, {avx512fp16, "avx512fp16"}};
  std::string out;
  for (auto& [has, name] : all)
    if (has) out += (out.empty() ? "" : " ") + std::string(name);
  return out.empty() ? "(none)" : out;
}

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#ifdef TETRA_X86_HOST
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  unsigned max_leaf = a;
  char vendor[13] = {};
  std::copy_n(reinterpret_cast<const char*>(&b), 4, vendor);
  std::copy_n(reinterpret_cast<const char*>(&d), 4, vendor + 4);
  std::copy_n(reinterpret_cast<const char*>(&c), 4, vendor + 8);
  f.vendor = vendor;

  __cpuid(1, a, b, c, d);
  auto bit = [](unsigned reg, int i) { return ((reg >> i) & 1u) != 0; };
  f.sse41 = bit(c, 19);
  bool osxsave = bit(c, 27);
  // The OS must save the vector state before AVX or AVX-512 instructions may run (XCR0).
  uint64_t xcr0 = 0;
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (uint64_t(hi) << 32) | lo;
  }
  bool os_avx = (xcr0 & 0x6) == 0x6;        // SSE and AVX (YMM) state
  bool os_avx512 = (xcr0 & 0xE6) == 0xE6;   // plus opmask, ZMM_Hi256 and Hi16_ZMM state
  f.avx = os_avx && bit(c, 28);
  f.fma = f.avx && bit(c, 12);
  f.f16c = f.avx && bit(c, 29);

  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    unsigned max_sub = a;
    f.avx2 = f.avx && bit(b, 5);
    if (os_avx512) {
      f.avx512f = bit(b, 16);
      f.avx512dq = bit(b, 17);
      f.avx512ifma = bit(b, 21);
      f.avx512cd = bit(b, 28);
      f.avx512bw = bit(b, 30);
      f.avx512vl = bit(b, 31);
      f.avx512vbmi = bit(c, 1);
      f.avx512vnni = bit(c, 11);
      f.avx512fp16 = bit(d, 23);
      if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        f.avx512bf16 = bit(a, 5);
      }
    }
  }
#endif
  return f;
}

namespace {

// The x86 tiers, lowest first; each one's Halide features include those below it.
enum class X86Tier { Base, Sse41, Avx, Avx2, Avx512, Avx512Vnni, Avx512Fp16 };

const char* tier_suffix(X86Tier tier) {
  switch (tier) {
    case X86Tier::Base: return "";
    case X86Tier::Sse41: return "-sse41";
    case X86Tier::Avx: return "-avx";
    case X86Tier::Avx2: return "-avx2";
    case X86Tier::Avx512: return "-avx512";
    case X86Tier::Avx512Vnni: return "-avx512-vnni";
    case X86Tier::Avx512Fp16: return "-avx512-fp16";
  }
  return "";
}

X86Tier tier_of(const CpuFeatures& f) {
  bool skylake = f.avx512f && f.avx512cd && f.avx512vl && f.avx512bw && f.avx512dq && f.avx2 && f.fma && f.f16c;
  bool vnni = skylake && f.avx512ifma && f.avx512vbmi && f.avx512vnni;
  if (vnni && f.avx512bf16 && f.avx512fp16) return X86Tier::Avx512Fp16;
  if (vnni) return X86Tier::Avx512Vnni;
  if (skylake) return X86Tier::Avx512;
  if (f.avx2 && f.fma && f.f16c) return X86Tier::Avx2;
  if (f.avx && f.sse41) return X86Tier::Avx;
  if (f.sse41) return X86Tier::Sse41;
  return X86Tier::Base;
}

// The features a tier guarantees, as CpuFeatures, so that named targets and CPUID share one mapping.
CpuFeatures features_of(X86Tier tier) {
  CpuFeatures f;
  int t = static_cast<int>(tier);
  f.sse41 = t >= int(X86Tier::Sse41);
  f.avx = t >= int(X86Tier::Avx);
  f.avx2 = f.fma = f.f16c = t >= int(X86Tier::Avx2);
  f.avx512f = f.avx512cd = f.avx512vl = f.avx512bw = f.avx512dq = t >= int(X86Tier::Avx512);
  f.avx512ifma = f.avx512vbmi = f.avx512vnni = t >= int(X86Tier::Avx512Vnni);
  f.avx512bf16 = f.avx512fp16 = t >= int(X86Tier::Avx512Fp16);
  return f;
}

X86Tier tier_of(const Halide::Target& t) {
  using T = Halide::Target;
  if (t.has_feature(T::AVX512_SapphireRapids)) return X86Tier::Avx512Fp16;
  if (t.has_feature(T::AVX512_Cannonlake)) return X86Tier::Avx512Vnni;
  if (t.has_feature(T::AVX512_Skylake)) return X86Tier::Avx512;
  if (t.has_feature(T::AVX2) && t.has_feature(T::FMA) && t.has_feature(T::F16C)) return X86Tier::Avx2;
  if (t.has_feature(T::AVX)) return X86Tier::Avx;
  if (t.has_feature(T::SSE41)) return X86Tier::Sse41;
  return X86Tier::Base;
}

TargetSpec cpu_spec(const Halide::Target& halide) {
  TargetSpec spec;
  spec.family = TargetFamily::Cpu;
  spec.halide = halide;
  spec.name = canonical_cpu_name(halide);
  return spec;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

bool all_alnum(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char ch) { return std::isalnum(ch); });
}

Failure bad_target(const std::string& text, const std::string& why) {
  return Failure{FailureKind::BadTarget, text,
                 why +
                     " (expected \"host\", x86-64[-sse41|-avx|-avx2|-avx512|-avx512-vnni|-avx512-fp16], "
                     "arm-64[-linux], hip:gfxNNN, cuda:sm_NN, opencl[-DEVICE] or a Halide target string)"};
}

// gfx9 (GCN, CDNA: gfx900..gfx942) runs 64-wide wavefronts; gfx10 and later (RDNA) default to 32.
Result<TargetSpec> parse_hip(const std::string& text, const std::string& arch) {
  if (arch.size() < 4 || arch.compare(0, 3, "gfx") != 0 || !all_alnum(arch))
    return bad_target(text, "a HIP target names an AMD GPU architecture such as gfx90a or gfx1100");
  TargetSpec spec = cpu_spec(host_target().halide);
  spec.family = TargetFamily::Hip;
  spec.gpu_arch = arch;
  int major = std::atoi(arch.substr(3, arch.size() - 5).c_str());  // gfx90a -> 9, gfx1100 -> 11
  if (major < 6) return bad_target(text, "unknown AMD GPU architecture");
  spec.wavefront = major >= 10 ? 32 : 64;
  spec.name = "hip-" + arch;
  return spec;
}

// An OpenCL device says nothing portable about its SIMD width, so its kernels use 32-wide waves:
// NVIDIA's warp and RDNA's wave, and half a CDNA wave (the templates' tiles are whole multiples of it).
Result<TargetSpec> parse_opencl(const std::string& text, const std::string& device) {
  if (opencl_target_name(device) != "opencl" + (device.empty() ? "" : "-" + device))
    return bad_target(text,
                      "an OpenCL target is \"opencl\" or opencl-DEVICE, its name in lower-case words joined by '-'");
  TargetSpec spec = cpu_spec(host_target().halide);
  spec.family = TargetFamily::OpenCL;
  spec.wavefront = 32;
  spec.name = "opencl" + (device.empty() ? "" : "-" + device);
  return spec;
}

Result<TargetSpec> parse_cuda(const std::string& text, std::string arch) {
  if (arch.compare(0, 3, "sm_") == 0) arch = "sm" + arch.substr(3);
  const bool digits = arch.size() >= 4 && arch.size() <= 5 && arch.compare(0, 2, "sm") == 0 &&
                      std::all_of(arch.begin() + 2, arch.end(), [](char c) { return std::isdigit(c); });
  const int capability = digits ? std::stoi(arch.substr(2)) : 0;
  static const std::vector<int> known = {30, 32, 35, 37, 50, 52, 53,  60,  61,  62,  70, 72,
                                         75, 80, 86, 87, 89, 90, 100, 101, 103, 120, 121};
  if (std::find(known.begin(), known.end(), capability) == known.end())
    return bad_target(text, "not an NVIDIA GPU arch (sm_30 .. sm_121, as clang names them)");
  // tetra emits its own CUDA kernels (dsl/gpu/emit_kernel.h), so any arch clang builds PTX for is a
  // target; the Halide feature (Halide 14 knows up to sm_86) is the newest it has at or below it.
  using T = Halide::Target;
  static const std::vector<std::pair<int, T::Feature>> caps = {
      {30, T::CUDACapability30}, {32, T::CUDACapability32}, {35, T::CUDACapability35},
      {50, T::CUDACapability50}, {61, T::CUDACapability61}, {70, T::CUDACapability70},
      {75, T::CUDACapability75}, {80, T::CUDACapability80}, {86, T::CUDACapability86}};
  T::Feature feature = caps.front().second;
  for (auto& [cap, f] : caps)
    if (cap <= capability) feature = f;
  TargetSpec spec = cpu_spec(host_target().halide);
  spec.family = TargetFamily::Cuda;
  spec.halide = spec.halide.with_feature(T::CUDA).with_feature(feature);
  spec.gpu_arch = "sm_" + arch.substr(2);
  spec.wavefront = 32;
  spec.name = "cuda-" + arch;
  return spec;
}

}  // namespace

Halide::Target halide_target_for(const CpuFeatures& f, Halide::Target::OS os) {
  using T = Halide::Target;
  std::vector<T::Feature> features;
  X86Tier tier = tier_of(f);
  int t = static_cast<int>(tier);
  if (t >= int(X86Tier::Sse41)) features.push_back(T::SSE41);
  if (t >= int(X86Tier::Avx)) features.push_back(T::AVX);
  if (t >= int(X86Tier::Avx2)) features.insert(features.end(), {T::AVX2, T::FMA, T::F16C});
  if (t >= int(X86Tier::Avx512)) features.insert(features.end(), {T::AVX512, T::AVX512_Skylake});
  if (t >= int(X86Tier::Avx512Vnni)) features.push_back(T::AVX512_Cannonlake);
  // Only a CPU with AVX512-FP16 may be called sapphirerapids: LLVM then emits vmovsh and friends.
  if (t >= int(X86Tier::Avx512Fp16)) features.push_back(T::AVX512_SapphireRapids);
  return T(os, T::X86, 64, features);
}

bool TargetSpec::has_int8_dot() const {
  if (!is_cpu()) return true;
  return halide.arch == Halide::Target::X86 && int(tier_of(halide)) >= int(X86Tier::Avx512Vnni);
}

Halide::Target int8_dot_target(const TargetSpec& target) {
  check(target.has_int8_dot() && target.is_cpu(), ErrorKind::Unsupported, target.name + " has no int8 dot products");
  return target.halide.with_feature(Halide::Target::AVX512_SapphireRapids);
}

// The runtime gains nothing from sapphirerapids code, so it never has it: one runtime serves both.
Halide::Target strip_kernel_only_features(const Halide::Target& kernel_target) {
  return kernel_target.without_feature(Halide::Target::AVX512_SapphireRapids);
}

std::string canonical_cpu_name(const Halide::Target& target) {
  using T = Halide::Target;
  if (target.arch == T::X86) {
    std::string base = target.bits == 64 ? "x86-64" : "x86-32";
    return base + tier_suffix(tier_of(target));
  }
  if (target.arch == T::ARM) {
    std::string name = target.bits == 64 ? "arm-64" : "arm-32";
    if (target.has_feature(T::ARMDotProd)) name += "-dotprod";
    if (target.has_feature(T::ARMFp16)) name += "-fp16";
    if (target.has_feature(T::SVE2)) name += "-sve2";
    return name;
  }
  return target.to_string();
}

int TargetSpec::natural_lanes(Halide::Type type) const {
  if (!is_cpu()) return 1;
  return std::max(1, halide.natural_vector_size(type));
}

int TargetSpec::vector_registers() const {
  if (!is_cpu()) return 0;
  if (halide.arch == Halide::Target::X86) return halide.has_feature(Halide::Target::AVX512) ? 32 : 16;
  return halide.arch == Halide::Target::ARM && halide.bits == 64 ? 32 : 16;
}

const TargetSpec& host_target() {
  static const TargetSpec spec = [] {
    Halide::Target host = Halide::get_host_target();
#ifdef TETRA_X86_HOST
    if (host.arch == Halide::Target::X86 && host.bits == 64)
      return cpu_spec(halide_target_for(detect_cpu_features(), host.os));
#endif
    return cpu_spec(host);
  }();
  return spec;
}

Status runs_on_host(const TargetSpec& target) {
  const TargetSpec& host = host_target();
  auto cannot = [&](const std::string& why) {
    return Failure{FailureKind::WrongTarget, target.name,
                   "this machine (" + host.name + ") cannot run code for it: " + why};
  };
  if (!target.is_cpu()) return cannot("it is a " + family_name(target.family) + " target");
  const Halide::Target& t = target.halide;
  if (t.arch != host.halide.arch || t.bits != host.halide.bits || t.os != host.halide.os)
    return cannot("another architecture or OS (" + t.to_string() + ")");
  std::string missing;
  for (int f = 0; f < Halide::Target::FeatureEnd; ++f) {
    auto feature = static_cast<Halide::Target::Feature>(f);
    if (t.has_feature(feature) && !host.halide.has_feature(feature))
      missing += (missing.empty() ? "" : " ") + Halide::Target::feature_to_name(feature);
  }
  if (!missing.empty()) return cannot("it lacks " + missing);
  return ok_status();
}

Result<TargetSpec> parse_target(const std::string& raw) {
  std::string text = raw;
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (text.empty()) return bad_target(raw, "empty target");
  if (text == "host") return host_target();
  if (text == "hip" || text == "cuda")  // run, bench and tune resolve these to this machine's GPU first
    return bad_target(raw, "name the GPU's arch, as hip:gfx942 or cuda:sm_90 (tetra run, bench and tune take " + text +
                               " alone for this machine's GPU)");
  for (const char* prefix : {"hip:", "hip-"})
    if (text.compare(0, 4, prefix) == 0) return parse_hip(raw, text.substr(4));
  if (text == "opencl") return parse_opencl(raw, "");
  if (text.compare(0, 7, "opencl-") == 0 && text.size() > 7) return parse_opencl(raw, text.substr(7));
  for (const char* prefix : {"cuda:", "cuda-"})
    if (text.compare(0, 5, prefix) == 0) return parse_cuda(raw, text.substr(5));

  // x86-64[-os][-tier]: tetra's own tier names.
  if (text.compare(0, 6, "x86-64") == 0) {
    std::string rest = text.substr(6);
    Halide::Target::OS os = Halide::Target::Linux;
    for (auto [name, value] : {std::pair{"-linux", Halide::Target::Linux}, {"-osx", Halide::Target::OSX},
                               {"-windows", Halide::Target::Windows}}) {
      std::string n = name;
      if (rest.compare(0, n.size(), n) == 0 && (rest.size() == n.size() || rest[n.size()] == '-')) {
        os = value;
        rest = rest.substr(n.size());
        break;
      }
    }
    for (int t = int(X86Tier::Base); t <= int(X86Tier::Avx512Fp16); ++t)
      if (rest == tier_suffix(X86Tier(t))) return cpu_spec(halide_target_for(features_of(X86Tier(t)), os));
  }
  // arm-64, arm-64-linux and the canonical arm names.
  if (text.compare(0, 6, "arm-64") == 0) {
    std::string halide = "arm-64-linux";
    for (const std::string& token : split(text.substr(6), '-')) {
      if (token.empty() || token == "linux") continue;
      if (token == "dotprod" || token == "arm_dot_prod") halide += "-arm_dot_prod";
      else if (token == "fp16" || token == "arm_fp16") halide += "-arm_fp16";
      else if (token == "sve2") halide += "-sve2";
      else return bad_target(raw, "unknown arm feature '" + token + "'");
    }
    return cpu_spec(Halide::Target(halide));
  }
  // Anything else must be a full Halide target string.
  if (!Halide::Target::validate_target_string(text)) return bad_target(raw, "not a target tetra knows");
  Halide::Target halide(text);
  if (halide.has_gpu_feature())
    return bad_target(raw, "name GPU targets as hip:gfxNNN or cuda:sm_NN, not with Halide GPU features");
  return cpu_spec(halide);
}

std::string toolchain_id() { return std::string("halide-") + TETRA_HALIDE_VERSION; }

Result<TargetSpec> parse_runnable_target(const std::string& text) {
  Result<TargetSpec> target = parse_target(text);
  if (!target) return target;
  if (Status st = runs_on_host(target.value()); !st) return st.failure();
  return target;
}

}  // namespace tetra::dsl
