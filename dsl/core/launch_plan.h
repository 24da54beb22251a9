// How the host launches a captured GPU kernel (dsl/gpu/capture_kernels.h), as data that needs no
// libHalide: the entry point, its parameters in order, and the values of its scalar parameters and of its
// grid as integer expressions of the launch's inputs: the buffers' mins, extents and strides
// ("A.extent.0") and the pipeline's scalar parameters. They are evaluated at each launch: block and
// thread counts are never fixed when the code is emitted.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsl/core/result.h"

namespace tetra::dsl {

// An integer expression of a launch's inputs. JSON: a number, an input's name, or [op, operands...]
// with op one of + - * / % min max < <= == != && || (two operands), ! (one) or select (three: c, a, b).
// / and % are Euclidean (the remainder is never negative), as Halide's are; comparisons give 0 or 1.
struct IndexExpr {
  enum class Op { Const, Input, Add, Sub, Mul, Div, Mod, Min, Max, Lt, Le, Eq, Ne, And, Or, Not, Select };
  Op op = Op::Const;
  int64_t value = 0;  // Const
  std::string input;  // Input: its name
  std::vector<IndexExpr> operands;

  static IndexExpr constant(int64_t v) { return IndexExpr{Op::Const, v, "", {}}; }
  static IndexExpr named(std::string name) { return IndexExpr{Op::Input, 0, std::move(name), {}}; }
};

// Every buffer a kernel is launched with starts at a multiple of this many bytes, which the kernels are
// compiled to assume (16-byte vector loads): the drivers' allocations start at 256, and device memory a
// caller binds in their place is checked (runtime/aot/aot_runtime.cpp).
constexpr int kDeviceBufferAlignment = 16;

// One parameter of a kernel: a buffer (a pointer to `type` elements, the buffer named `name`) or a
// scalar of `type` whose value is `value`.
struct KernelParam {
  std::string name;
  bool is_buffer = false;
  std::string type;                  // "f32", "f16", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"
  bool read = false, write = false;  // buffers
  IndexExpr value;                   // integer scalars; a float scalar is the input of its name
  int bytes() const;                 // of one element or of the scalar
};

// The elements [min, max] of dimension `dim` of buffer `buffer` that a kernel may touch.
struct TouchedRange {
  std::string buffer;
  int dim = 0;
  IndexExpr min, max;
};

struct LaunchPlan {
  std::string kernel;  // the entry point
  std::string node;    // the graph node it runs for, where a model job says ("Conv 'conv1'"); may be empty
  std::vector<KernelParam> params;
  std::array<IndexExpr, 3> blocks, threads;  // x, y, z
  int64_t shared_bytes = 0;                  // workgroup memory, declared inside the kernel
  // What it touches of its buffers (plans from before this field touch nothing that is checked).
  std::vector<TouchedRange> touched;

  // "tetra_n3_k0 (Conv 'conv1')" where the plan names its node, else the kernel: what failures name.
  std::string label() const;

  nlohmann::json to_json() const;
  static Result<LaunchPlan> from_json(const nlohmann::json& j);
};

// `e` for these inputs. A missing input or a division by zero is a Failure.
Result<int64_t> evaluate(const IndexExpr& e, const std::map<std::string, int64_t>& inputs);

// The plan's grid for these inputs: blocks and threads per block in x, y, z. empty() when any count is
// below 1: nothing to launch.
struct LaunchGrid {
  std::array<int64_t, 3> blocks{}, threads{};
  bool empty() const;
};
Result<LaunchGrid> evaluate_grid(const LaunchPlan& plan, const std::map<std::string, int64_t>& inputs);

// Whether the buffers these inputs describe hold every element the plan touches; a Failure names the
// kernel, the buffer, its dimension, and both ranges. A kernel reading past its buffer would read another
// allocation's memory, or fault the device, so a job checks this once, before anything launches.
Status check_touched(const LaunchPlan& plan, const std::map<std::string, int64_t>& inputs);

}  // namespace tetra::dsl
