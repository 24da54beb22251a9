#include "dsl/gpu/emit_kernel.h"

#include <map>
#include <sstream>

#include "dsl/core/launch_plan.h"

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

namespace {

// What differs between the dialects; the kernel bodies differ only through this.
struct DialectTable {
  const char* prelude;
  const char* entry;      // before "void NAME("
  // After the entry, where the threads per block are a constant %n: the register allocator's budget
  // (without it, AMD kernels are compiled for blocks of 1024 threads).
  const char* launch_bounds;
  const char* global;     // qualifies a buffer parameter's pointer
  const char* restrict_;  // qualifies a buffer parameter
  const char* shared;     // qualifies a workgroup array
  // Qualifies a pointer into a workgroup array, as in an element read as another type (Halide packs a
  // kernel's workgroup arrays into one).
  const char* shared_pointer;
  const char* block_id[3];
  const char* thread_id[3];
  const char* barrier;
  const char* bit_cast;  // reinterprets the bits of %s (an expression) as the type %t
  // After a buffer parameter's name: the compiler may assume it aligned to %n bytes, so that adjacent
  // loads become one vector load ("" where the dialect has no way to say so).
  const char* aligned;
  // A 16- or 8-byte load (dsl/gpu/vector_loads.h) of %n elements of buffer %p from element %i, of vector
  // type %t.
  const char* vector_load;
  // A load from the address %a that the caches keep no line for (a nontemporal load), of type %t; ""
  // where the dialect has none, and the load is a plain one.
  const char* streaming_load;
  // The sum of the float %v over the %n adjacent lanes of its group (dsl/gpu/private_arrays.h
  // lower_lane_sums), which every lane of the block calls together; and what a kernel that calls it declares
  // first, for a block of %n threads ("" where nothing).
  const char* lane_sum;
  const char* lane_scratch;
  // OpenCL C: %t is the OpenCL type name (as_uint), integer literals take OpenCL's suffixes, and float16
  // (without cl_khr_fp16) is carried in float: loads through vload_half, rounding through
  // tetra_round_f16, "half" only behind buffer pointers.
  bool opencl_c;
};

// Fixed-width integer names as Halide's C printer spells them, for dialects without <stdint.h>.
#define TETRA_C_INTS                                                                                \
  "typedef signed char int8_t;\ntypedef unsigned char uint8_t;\ntypedef short int16_t;\n"           \
  "typedef unsigned short uint16_t;\ntypedef int int32_t;\ntypedef unsigned int uint32_t;\n"        \
  "typedef long long int64_t;\ntypedef unsigned long long uint64_t;\ntypedef _Float16 float16_t;\n" \
  "typedef float tetra_f32x4 __attribute__((ext_vector_type(4)));\n"                                \
  "typedef int32_t tetra_i32x4 __attribute__((ext_vector_type(4)));\n"                              \
  "typedef uint32_t tetra_u32x4 __attribute__((ext_vector_type(4)));\n"                             \
  "typedef float tetra_f32x2 __attribute__((ext_vector_type(2)));\n"                                \
  "typedef int32_t tetra_i32x2 __attribute__((ext_vector_type(2)));\n"                              \
  "typedef uint32_t tetra_u32x2 __attribute__((ext_vector_type(2)));\n"

// Helpers Halide's C printer calls (and tetra_fma, an explicit multiply-add), in each dialect's terms.
#define TETRA_CPP_HELPERS                                                                          \
  "template <typename T> __device__ inline T tetra_max(T a, T b) { return a > b ? a : b; }\n"      \
  "template <typename T> __device__ inline T tetra_min(T a, T b) { return a < b ? a : b; }\n"      \
  "__device__ inline float float_from_bits(uint32_t b) { return __builtin_bit_cast(float, b); }\n" \
  "__device__ inline float tetra_fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }\n"

// dot4_i8's call, in plain C (each int8 lane widened), for devices without the instruction.
#define TETRA_DOT4_I8_C                                                                             \
  "__device__ inline int32_t tetra_dot4_i8_c(uint32_t a, uint32_t b, int32_t c) {\n"                \
  "  for (int i = 0; i < 32; i += 8) c += (int32_t)(int8_t)(a >> i) * (int32_t)(int8_t)(b >> i);\n" \
  "  return c;\n}\n"
// AMD: the instruction the arch has, by the macro build_hip_code_object defines from its facts.
#define TETRA_AMDGPU_DOT4_I8                                                                               \
  "__device__ inline int32_t tetra_dot4_i8(uint32_t a, uint32_t b, int32_t c) {\n"                         \
  "#if defined(TETRA_SDOT4)\n  return __builtin_amdgcn_sdot4((int)a, (int)b, c, false);\n"                 \
  "#elif defined(TETRA_SUDOT4)\n  return __builtin_amdgcn_sudot4(true, (int)a, true, (int)b, c, false);\n" \
  "#else\n#error \"no int8 dot product chosen for this arch (TETRA_SDOT4 or TETRA_SUDOT4)\"\n#endif\n}\n"
#define TETRA_NVPTX_DOT4_I8                                                                             \
  TETRA_DOT4_I8_C                                                                                       \
  "__device__ inline int32_t tetra_dot4_i8(uint32_t a, uint32_t b, int32_t c) {\n"                      \
  "#if __CUDA_ARCH__ >= 610\n"                                                                          \
  "  int32_t d;\n  asm(\"dp4a.s32.s32 %0, %1, %2, %3;\" : \"=r\"(d) : \"r\"(a), \"r\"(b), \"r\"(c));\n" \
  "  return d;\n#else\n  return tetra_dot4_i8_c(a, b, c);\n#endif\n}\n"

// float16 pairs as the two halves of a uint32 (lane 0 low), for the float16-activation kernels: a pair
// packed from two floats (rounded to nearest even), and acc + a.lo * b.lo + a.hi * b.hi in float32.
// AMD: v_dot2_f32_f16, which every arch in dsl/core/amd_arch.h has (LLVM's dot10-insts); NVPTX: two
// multiply-adds of the widened halves.
#define TETRA_F16X2_TYPES                                               \
  "typedef _Float16 tetra_f16x2 __attribute__((ext_vector_type(2)));\n" \
  "__device__ inline uint32_t tetra_pack_f16x2(float lo, float hi) {\n" \
  "  return __builtin_bit_cast(uint32_t, (tetra_f16x2){(_Float16)lo, (_Float16)hi});\n}\n"
#define TETRA_AMDGPU_DOT2_F16                                                                                   \
  TETRA_F16X2_TYPES                                                                                             \
  "__device__ inline float tetra_dot2_f16(uint32_t a, uint32_t b, float c) {\n"                                 \
  "  return __builtin_amdgcn_fdot2(__builtin_bit_cast(tetra_f16x2, a), __builtin_bit_cast(tetra_f16x2, b), c, " \
  "false);\n}\n"
#define TETRA_NVPTX_DOT2_F16                                                                        \
  TETRA_F16X2_TYPES                                                                                 \
  "__device__ inline float tetra_dot2_f16(uint32_t a, uint32_t b, float c) {\n"                     \
  "  tetra_f16x2 x = __builtin_bit_cast(tetra_f16x2, a), y = __builtin_bit_cast(tetra_f16x2, b);\n" \
  "  return __builtin_fmaf((float)x.y, (float)y.y, __builtin_fmaf((float)x.x, (float)y.x, c));\n}\n"

// The lanes' butterfly of lower_lane_sums: at each step a lane adds the value of the lane whose id differs
// in one bit, so every lane of the group ends with the same sum, in the same order in every dialect. AMD:
// ds_bpermute (a cross-lane read that uses no workgroup memory) from the lane's id in the wave; NVIDIA:
// shfl.sync.bfly over the whole warp, which every lane reaches. A group wider than the arch's wave is a
// compile error, not a wrong sum.
#define TETRA_AMDGPU_LANE_SUM                                                                                        \
  "template <int lanes> __device__ inline float tetra_lane_sum(float v) {\n"                                         \
  "  static_assert(lanes <= __AMDGCN_WAVEFRONT_SIZE__, \"a lane sum wider than this arch's wave\");\n"               \
  "  const int lane = __builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u));\n"                         \
  "  for (int o = lanes / 2; o > 0; o /= 2)\n"                                                                       \
  "    v += __builtin_bit_cast(float, __builtin_amdgcn_ds_bpermute((lane ^ o) << 2, __builtin_bit_cast(int, v)));\n" \
  "  return v;\n}\n"
#define TETRA_NVPTX_LANE_SUM                                                                            \
  "template <int lanes> __device__ inline float tetra_lane_sum(float v) {\n"                            \
  "  static_assert(lanes <= 32, \"a lane sum wider than a warp\");\n"                                   \
  "  for (int o = lanes / 2; o > 0; o /= 2) v += __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, o, 0x1f);\n" \
  "  return v;\n}\n"

// Halide's float math (exp_f32, ...) as each dialect has it, with no device library: clang's builtins,
// which the AMDGPU backend lowers to its own instructions; NVPTX's base-2 approximations, within a few
// ulp; OpenCL C's own functions.
#define TETRA_CLANG_MATH                                                         \
  "__device__ inline float inf_f32() { return __builtin_inff(); }\n"             \
  "__device__ inline float neg_inf_f32() { return -__builtin_inff(); }\n"        \
  "__device__ inline float nan_f32() { return __builtin_nanf(\"\"); }\n"         \
  "__device__ inline float floor_f32(float x) { return __builtin_floorf(x); }\n" \
  "__device__ inline float ceil_f32(float x) { return __builtin_ceilf(x); }\n"   \
  "__device__ inline float round_f32(float x) { return __builtin_rintf(x); }\n"  \
  "__device__ inline float trunc_f32(float x) { return __builtin_truncf(x); }\n" \
  "__device__ inline float abs_f32(float x) { return __builtin_fabsf(x); }\n"    \
  "__device__ inline bool is_nan_f32(float x) { return __builtin_isnan(x); }\n"
#define TETRA_AMDGPU_MATH                                                    \
  TETRA_CLANG_MATH                                                           \
  "__device__ inline float exp_f32(float x) { return __builtin_expf(x); }\n" \
  "__device__ inline float log_f32(float x) { return __builtin_logf(x); }\n" \
  "__device__ inline float sqrt_f32(float x) { return __builtin_sqrtf(x); }\n"
#define TETRA_NVPTX_MATH                                                                                  \
  TETRA_CLANG_MATH                                                                                        \
  "__device__ inline float exp_f32(float x) { return __nvvm_ex2_approx_f(x * 1.44269504088896341f); }\n"  \
  "__device__ inline float log_f32(float x) { return __nvvm_lg2_approx_f(x) * 0.693147180559945309f; }\n" \
  "__device__ inline float sqrt_f32(float x) { return __nvvm_sqrt_rn_f(x); }\n"
#define TETRA_OPENCL_MATH                                                                      \
  "#define inf_f32() INFINITY\n#define neg_inf_f32() (-INFINITY)\n#define nan_f32() NAN\n"     \
  "#define exp_f32(x) exp(x)\n#define log_f32(x) log(x)\n#define sqrt_f32(x) sqrt(x)\n"        \
  "#define floor_f32(x) floor(x)\n#define ceil_f32(x) ceil(x)\n#define round_f32(x) rint(x)\n" \
  "#define trunc_f32(x) trunc(x)\n#define abs_f32(x) fabs(x)\n#define is_nan_f32(x) isnan(x)\n"

const DialectTable kHip = {
    "// HIP, self-contained: amdgcn builtins, no device headers or libraries.\n"
    "#define __global__ __attribute__((global))\n#define __device__ __attribute__((device))\n"
    "#define __shared__ __attribute__((shared))\n" TETRA_C_INTS TETRA_CPP_HELPERS TETRA_AMDGPU_MATH TETRA_AMDGPU_DOT4_I8
        TETRA_AMDGPU_DOT2_F16 TETRA_AMDGPU_LANE_SUM,
    "extern \"C\" __global__ ",
    "__attribute__((amdgpu_flat_work_group_size(1, %n))) ",
    "",
    " __restrict__",
    "__shared__ ",
    "",
    {"__builtin_amdgcn_workgroup_id_x()", "__builtin_amdgcn_workgroup_id_y()", "__builtin_amdgcn_workgroup_id_z()"},
    {"__builtin_amdgcn_workitem_id_x()", "__builtin_amdgcn_workitem_id_y()", "__builtin_amdgcn_workitem_id_z()"},
    "__builtin_amdgcn_fence(__ATOMIC_RELEASE, \"workgroup\"); __builtin_amdgcn_s_barrier(); "
    "__builtin_amdgcn_fence(__ATOMIC_ACQUIRE, \"workgroup\");",
    "__builtin_bit_cast(%t, %s)",
    " __attribute__((align_value(%n)))",
    "*(const %t *)(%p + %i)",
    "__builtin_nontemporal_load(%a)",  // the arch's streaming bits: slc (gfx9-11), nt (gfx940), TH_LOAD_NT (gfx12)
    "tetra_lane_sum<%n>(%v)",
    "",
    false,
};

const DialectTable kOpenCL = {
    "// OpenCL C 1.2.\n"
    "typedef char int8_t;\ntypedef uchar uint8_t;\ntypedef short int16_t;\ntypedef ushort uint16_t;\n"
    "typedef int int32_t;\ntypedef uint uint32_t;\ntypedef long int64_t;\ntypedef ulong uint64_t;\n"
    // float16 without cl_khr_fp16 (which pocl's CPU device lacks): values live in float, loads convert
    // with vload_half, and a cast to float16 rounds through vstore_half_rte.
    "inline float tetra_round_f16(float x) { ushort b; vstore_half_rte(x, 0, (half*)&b); return vload_half(0, (const "
    "half*)&b); }\n"
    "#define tetra_max(a, b) max(a, b)\n#define tetra_min(a, b) min(a, b)\n"
    "#define float_from_bits(b) as_float((uint)(b))\n#define tetra_fma(a, b, c) fma(a, b, c)\n" TETRA_OPENCL_MATH
    "inline int tetra_dot4_i8(uint a, uint b, int c) {\n"
    "  char4 x = as_char4(a), y = as_char4(b);\n"
    "  return c + x.s0 * y.s0 + x.s1 * y.s1 + x.s2 * y.s2 + x.s3 * y.s3;\n}\n"
    "inline uint tetra_pack_f16x2(float lo, float hi) {\n"
    "  ushort h[2];\n  vstore_half_rte(lo, 0, (half*)h);\n  vstore_half_rte(hi, 1, (half*)h);\n"
    "  return h[0] | ((uint)h[1] << 16);\n}\n"
    "inline float tetra_dot2_f16(uint a, uint b, float c) {\n"
    "  ushort h[4] = {(ushort)a, (ushort)(a >> 16), (ushort)b, (ushort)(b >> 16)};\n"
    "  return fma(vload_half(1, (const half*)h), vload_half(3, (const half*)h), fma(vload_half(0, (const half*)h), "
    "vload_half(2, (const half*)h), c));\n}\n"
    // OpenCL C 1.2 has no cross-lane operations (pocl's CPU device offers no subgroups): the same butterfly
    // through workgroup memory, a barrier each half-step, which every work-item reaches.
    "inline float tetra_lane_sum(float v, int lanes, __local float* scratch) {\n"
    "  const int i = get_local_id(0) + get_local_size(0) * (get_local_id(1) + get_local_size(1) * get_local_id(2));\n"
    "  for (int o = lanes / 2; o > 0; o /= 2) {\n"
    "    scratch[i] = v;\n    barrier(CLK_LOCAL_MEM_FENCE);\n    v += scratch[i ^ o];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n  }\n  return v;\n}\n",
    "__kernel ",
    "",
    "__global ",
    " restrict",
    "__local ",
    "__local ",
    {"(int)get_group_id(0)", "(int)get_group_id(1)", "(int)get_group_id(2)"},
    {"(int)get_local_id(0)", "(int)get_local_id(1)", "(int)get_local_id(2)"},
    "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);",
    "as_%t(%s)",
    "",
    "vload%n(0, %p + %i)",
    "",
    "tetra_lane_sum(%v, %n, tetra_lanes)",
    "__local float tetra_lanes[%n];",
    true,
};

const DialectTable kCuda = {
    "// CUDA, self-contained: NVVM builtins, no CUDA headers or libraries.\n"
    "#define __global__ __attribute__((global))\n#define __device__ __attribute__((device))\n"
    "#define __shared__ __attribute__((shared))\n" TETRA_C_INTS TETRA_CPP_HELPERS TETRA_NVPTX_MATH TETRA_NVPTX_DOT4_I8
        TETRA_NVPTX_DOT2_F16 TETRA_NVPTX_LANE_SUM,
    "extern \"C\" __global__ ",
    "__attribute__((launch_bounds(%n))) ",
    "",
    " __restrict__",
    "__shared__ ",
    "",
    {"__nvvm_read_ptx_sreg_ctaid_x()", "__nvvm_read_ptx_sreg_ctaid_y()", "__nvvm_read_ptx_sreg_ctaid_z()"},
    {"__nvvm_read_ptx_sreg_tid_x()", "__nvvm_read_ptx_sreg_tid_y()", "__nvvm_read_ptx_sreg_tid_z()"},
    "__nvvm_bar_sync(0);",
    "__builtin_bit_cast(%t, %s)",
    " __attribute__((align_value(%n)))",
    "*(const %t *)(%p + %i)",
    "__builtin_nontemporal_load(%a)",  // a hint NVPTX may drop
    "tetra_lane_sum<%n>(%v)",
    "",
    false,
};

// Whether `s` calls the function `name`.
bool calls(const Stmt& s, const std::string& name) {
  struct Finder : IRVisitor {
    const std::string* name;
    bool found = false;
    using IRVisitor::visit;
    void visit(const Call* op) override {
      found = found || op->name == *name;
      IRVisitor::visit(op);
    }
  } finder;
  finder.name = &name;
  s.accept(&finder);
  return finder.found;
}

// `pattern` with each placeholder replaced by its value, every occurrence.
std::string fill(std::string pattern, const std::vector<std::pair<std::string, std::string>>& values) {
  for (const auto& [key, value] : values)
    for (size_t at = pattern.find(key); at != std::string::npos; at = pattern.find(key, at + value.size()))
      pattern.replace(at, key.size(), value);
  return pattern;
}

const DialectTable& table_of(Dialect d) {
  switch (d) {
    case Dialect::Hip:
      return kHip;
    case Dialect::OpenCL:
      return kOpenCL;
    case Dialect::Cuda:
      return kCuda;
  }
  return kHip;
}

class KernelPrinter : public CodeGen_C {
 public:
  KernelPrinter(std::ostringstream& out, const DialectTable& table)
      : CodeGen_C(out, Target("x86-64-linux"), CImplementation), out_(out), table_(table) {
    out_.str("");  // the base printed its C++ prelude; device code has its own
    out_.clear();
    if (table.opencl_c) integer_suffix_style = IntegerSuffixStyle::OpenCL;  // 1ul, not 1ull
  }

  void kernel(const DeviceKernel& k) {
    cache.clear();
    error_.clear();
    streamed_ = *table_.streaming_load ? k.streamed_buffers : std::set<std::string>{};
    stream << table_.entry;
    if (int64_t threads = constant_threads_per_block(k); threads > 0 && *table_.launch_bounds)
      stream << fill(table_.launch_bounds, {{"%n", std::to_string(threads)}});
    stream << "void " << k.name << "(";
    for (size_t i = 0; i < k.args.size(); ++i) {
      const DeviceArgument& a = k.args[i];
      if (i) stream << ", ";
      if (a.is_buffer) {
        // OpenCL names float16 elements "half" (usable through pointers without cl_khr_fp16).
        std::string element = opencl() && is_f16(a.type) ? "half" : print_type(a.type);
        stream << table_.global << (a.write ? "" : "const ") << element << " *" << table_.restrict_ << " "
               << print_name(a.name) << fill(table_.aligned, {{"%n", std::to_string(kDeviceBufferAlignment)}});
        allocations.push(a.name, {a.type});
      } else {
        stream << print_type(a.type.is_bool() ? Int(32) : a.type) << " " << print_name(a.name);  // no bool parameters
      }
    }
    stream << ") ";
    open_scope();
    if (*table_.lane_scratch && calls(k.body, "tetra_lane_sum")) {
      const int64_t threads = constant_threads_per_block(k);
      if (threads <= 0) error_ = "lane sums in a block of no constant size";
      stream << get_indent() << fill(table_.lane_scratch, {{"%n", std::to_string(threads)}}) << "\n";
    }
    print_stmt(k.body);
    close_scope(k.name);
    for (const DeviceArgument& a : k.args)
      if (a.is_buffer) allocations.pop(a.name);
    if (!error_.empty()) throw std::runtime_error(k.name + ": " + error_);
  }

 private:
  using CodeGen_C::visit;

  // Device code is scalar per lane, but for the 16- and 8-byte loads of dsl/gpu/vector_loads.h.
  static bool is_load_vector(Type t) { return (t.lanes() == 4 || t.lanes() == 2) && t.bits() == 32; }
  std::string print_type(Type t, AppendSpaceIfNeeded space = DoNotAppendSpace) override {
    if (is_load_vector(t)) {
      const std::string lanes = std::to_string(t.lanes());
      const char* kind = t.is_float() ? "f" : t.is_int() ? "i" : "u";
      std::string name = opencl() ? opencl_type(t.element_of()) + lanes : std::string("tetra_") + kind + "32x" + lanes;
      return space == AppendSpace ? name + " " : name;
    }
    if (t.lanes() != 1) error_ = "vector type " + type_to_c_type(t, false) + " (device code is scalar per lane)";
    if (opencl() && t.is_float() && t.bits() == 16) return "float";  // float16 values are carried in float
    return CodeGen_C::print_type(t.element_of(), space);
  }

  bool opencl() const { return table_.opencl_c; }
  static bool is_f16(Type t) { return t.is_float() && t.bits() == 16; }

  // OpenCL without cl_khr_fp16: a float16 element is read with vload_half.
  // An element of a workgroup array read or written as another type than the array's.
  bool retyped_shared(const std::string& name, Type t) const {
    auto it = shared_types_.find(name);
    return it != shared_types_.end() && it->second != t && t.lanes() == 1;
  }
  std::string shared_element(const std::string& name, Type t, const Expr& index) {
    std::string i = print_expr(index);
    return "((" + std::string(table_.shared_pointer) + print_type(t) + " *)" + print_name(name) + ")[" + i + "]";
  }

  void visit(const Load* op) override {
    if (is_load_vector(op->type)) return print_vector_load(op);
    if (retyped_shared(op->name, op->type) && is_const_one(op->predicate)) {
      print_assignment(op->type, shared_element(op->name, op->type, op->index));
      return;
    }
    if (streamed_.count(op->name) && is_const_one(op->predicate)) {
      std::string index = print_expr(op->index);
      print_assignment(op->type, streaming_load(op->type, "((const " + print_type(op->type) + " *)" +
                                                              print_name(op->name) + " + " + index + ")"));
      return;
    }
    if (!(opencl() && is_f16(op->type))) return CodeGen_C::visit(op);
    if (!is_const_one(op->predicate)) error_ = "a predicated float16 load";
    std::string index = print_expr(op->index);
    print_assignment(Float(32), "vload_half(" + index + ", " + print_name(op->name) + ")");
  }
  void print_vector_load(const Load* op) {
    const Ramp* dense = op->index.as<Ramp>();
    if (!dense || !is_const_one(dense->stride) || !is_const_one(op->predicate)) {
      error_ = "a vector load of " + op->name + " that is not of adjacent elements";
      return;
    }
    std::string base = print_expr(dense->base);
    if (streamed_.count(op->name)) {
      const std::string address = "(const " + print_type(op->type) + " *)(" + print_name(op->name) + " + " + base + ")";
      print_assignment(op->type, streaming_load(op->type, address));
      return;
    }
    print_assignment(op->type, fill(table_.vector_load, {{"%t", print_type(op->type)},
                                                         {"%n", std::to_string(op->type.lanes())},
                                                         {"%p", print_name(op->name)},
                                                         {"%i", base}}));
  }
  std::string streaming_load(Type t, const std::string& address) {
    return fill(table_.streaming_load, {{"%t", print_type(t)}, {"%a", address}});
  }
  // Other vectors (a schedule that vectorizes a GPU loop): refused by name, not printed as host C++.
  void visit(const Ramp* op) override {
    error_ = "a vector index " + print_type(op->type.element_of()) + " ramp (device code is scalar per lane)";
  }
  void visit(const Broadcast*) override { error_ = "a vector broadcast (device code is scalar per lane)"; }
  void visit(const Shuffle* op) override {
    if (!op->is_extract_element() || !is_load_vector(op->vectors[0].type())) {
      error_ = "a vector shuffle (device code is scalar per lane)";
      return;
    }
    std::string vector = print_expr(op->vectors[0]);
    print_assignment(op->type, vector + "." + "xyzw"[op->indices[0]]);
  }

  void visit(const Store* op) override {
    if (opencl() && is_f16(op->value.type())) error_ = "a float16 store (OpenCL devices without cl_khr_fp16)";
    if (retyped_shared(op->name, op->value.type()) && is_const_one(op->predicate)) {
      std::string value = print_expr(op->value);
      std::string element = shared_element(op->name, op->value.type(), op->index);
      stream << get_indent() << element << " = " << value << ";\n";
      return;
    }
    CodeGen_C::visit(op);
  }
  void visit(const Cast* op) override {
    if (!(opencl() && (is_f16(op->type) || is_f16(op->value.type())))) return CodeGen_C::visit(op);
    std::string value = print_expr(op->value);
    if (is_f16(op->type) && !is_f16(op->value.type()))
      print_assignment(Float(32), "tetra_round_f16((float)(" + value + "))");
    else
      print_assignment(op->type.is_float() && op->type.bits() == 32 ? Float(32) : op->type,
                       "(" + print_type(op->type) + ")(" + value + ")");
  }

  void visit(const For* op) override {
    bool block = false;
    int axis = gpu_loop_axis(op->name, &block);
    if (axis < 0) return CodeGen_C::visit(op);
    if (!is_const_zero(op->min)) error_ = "GPU loop " + op->name + " does not start at 0";
    stream << get_indent() << "int " << print_name(op->name) << " = "
           << (block ? table_.block_id[axis] : table_.thread_id[axis]) << ";\n";
    op->body.accept(this);
  }

  void visit(const Allocate* op) override {
    const int64_t elements = op->constant_allocation_size();
    if (elements <= 0) {
      error_ = "allocation " + op->name + " has no constant size";
      return;
    }
    stream << get_indent() << (op->memory_type == MemoryType::GPUShared ? table_.shared : "") << print_type(op->type)
           << " " << print_name(op->name) << "[" << elements << "];\n";
    allocations.push(op->name, {op->type});
    if (op->memory_type == MemoryType::GPUShared) shared_types_[op->name] = op->type;
    op->body.accept(this);
    allocations.pop(op->name);
    shared_types_.erase(op->name);
  }

  std::string print_reinterpret(Type t, const Expr& e) override {
    std::string value = print_expr(e);
    if (t.is_int_or_uint() && e.type().is_int_or_uint())  // same width: a plain conversion keeps the bits
      return "((" + print_type(t) + ")(" + value + "))";
    // OpenCL names the type in the function (as_uint, as_float); C++ dialects take the type.
    std::string type = opencl() ? opencl_type(t) : print_type(t);
    return fill(table_.bit_cast, {{"%t", type}, {"%s", value}});
  }
  static std::string opencl_type(Type t) {
    if (t.is_float()) return t.bits() == 64 ? "double" : t.bits() == 16 ? "half" : "float";
    const char* names[] = {"char", "short", "int", "long"};
    int i = t.bits() == 8 ? 0 : t.bits() == 16 ? 1 : t.bits() == 32 ? 2 : 3;
    return std::string(t.is_uint() ? "u" : "") + names[i];
  }

  void visit(const Min* op) override { print_pair("tetra_min", op->type, op->a, op->b); }
  void visit(const Max* op) override { print_pair("tetra_max", op->type, op->a, op->b); }
  void print_pair(const char* fn, Type t, const Expr& a, const Expr& b) {
    std::string x = print_expr(a), y = print_expr(b);
    print_assignment(t, std::string(fn) + "(" + x + ", " + y + ")");
  }

  void visit(const Free*) override {}  // workgroup and private arrays end with their scope

  // A check Halide could not prove at compile time, left inside the loops: a device cannot report it.
  void visit(const AssertStmt* op) override {
    std::ostringstream s;
    s << "a run-time check inside the kernel (" << op->condition
      << "): the schedule leaves Halide a bound it cannot prove";
    error_ = s.str();
  }

  void visit(const Evaluate* op) override {
    const Call* call = op->value.as<Call>();
    if (call && call->is_intrinsic(Call::gpu_thread_barrier)) {
      stream << get_indent() << table_.barrier << "\n";
      return;
    }
    CodeGen_C::visit(op);
  }

  void visit(const Call* op) override {
    if (op->is_intrinsic(Call::gpu_thread_barrier)) {
      error_ = "a barrier inside an expression";
      return;
    }
    if (op->name == "tetra_lane_sum" && op->args.size() == 2) {
      std::string value = print_expr(op->args[0]), lanes = print_expr(op->args[1]);
      print_assignment(op->type, fill(table_.lane_sum, {{"%v", value}, {"%n", lanes}}));
      return;
    }
    CodeGen_C::visit(op);
  }

  std::ostringstream& out_;
  const DialectTable& table_;
  std::set<std::string> streamed_;            // the kernel's streamed buffers, where the dialect can stream
  std::map<std::string, Type> shared_types_;  // the workgroup arrays in scope
  std::string error_;
};

}  // namespace

Halide::Expr dot4_i8(const Halide::Expr& a, const Halide::Expr& b, const Halide::Expr& acc) {
  return Call::make(Int(32), "tetra_dot4_i8", {cast<uint32_t>(a), cast<uint32_t>(b), cast<int32_t>(acc)},
                    Call::PureExtern);
}

Halide::Expr dot2_f16(const Halide::Expr& a, const Halide::Expr& b, const Halide::Expr& acc) {
  return Call::make(Float(32), "tetra_dot2_f16", {cast<uint32_t>(a), cast<uint32_t>(b), cast<float>(acc)},
                    Call::PureExtern);
}

Halide::Expr pack_f16x2(const Halide::Expr& lo, const Halide::Expr& hi) {
  return Call::make(UInt(32), "tetra_pack_f16x2", {cast<float>(lo), cast<float>(hi)}, Call::PureExtern);
}

Dialect dialect_of(TargetFamily family) {
  return family == TargetFamily::OpenCL ? Dialect::OpenCL : family == TargetFamily::Cuda ? Dialect::Cuda : Dialect::Hip;
}

std::string dialect_name(Dialect d) {
  switch (d) {
    case Dialect::Hip:
      return "hip";
    case Dialect::OpenCL:
      return "opencl";
    case Dialect::Cuda:
      return "cuda";
  }
  return "";
}

Result<std::string> emit_kernels(const std::vector<DeviceKernel>& kernels, Dialect dialect) {
  const DialectTable& table = table_of(dialect);
  std::ostringstream body;
  try {
    KernelPrinter printer(body, table);
    for (const DeviceKernel& k : kernels) printer.kernel(k);
  } catch (const std::exception& e) {
    return Failure{FailureKind::Unsupported, dialect_name(dialect), e.what()};
  }
  return std::string(table.prelude) + "\n" + body.str();
}

}  // namespace tetra::dsl::gpu
