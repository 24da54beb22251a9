// TVM-style compute definitions on Halide: an output Func with named spatial and reduction axes, and
// the intermediate Funcs ("stages") that a schedule may place, vectorise or stage. A ComputeDef holds
// the algorithm only; schedules (dsl/schedule.h, schedules/) act on it by these names.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "Halide.h"
#include "importer/error.h"

namespace tetra::dsl {

// A spatial axis: a pure Var of the output or of a stage.
struct Axis {
  std::string name;
  Halide::Var var;
};

// A reduction axis over [0, extent).
struct ReduceAxis {
  std::string name;
  Halide::RDom dom;
  Halide::Expr extent;

  Halide::RVar rvar() const { return dom.x; }
};

inline Axis make_axis(const std::string& name) { return Axis{name, Halide::Var(name)}; }
inline ReduceAxis make_reduce_axis(const std::string& name, const Halide::Expr& extent) {
  return ReduceAxis{name, Halide::RDom(0, extent, name), extent};
}

// What a schedule asks of the GPU kernels a ComputeDef lowers to, beyond Halide's schedule
// (dsl/gpu/capture_kernels.h).
struct GpuKernelHints {
  // Inputs, by name, that a schedule reads once and asks to stream past the caches (GPU kernels load them
  // nontemporally), so that what is read again keeps its cache lines.
  std::set<std::string> streamed_inputs;
  // Register Funcs, by name, whose values a wave's lanes add up by cross-lane exchanges
  // (dsl/gpu/private_arrays.h lower_lane_sums).
  std::set<std::string> lane_sums;
  // Serial loops over chunks staged in workgroup memory, by the last part of their name ("kc"), that stage
  // the next chunk while computing on this one (dsl/gpu/double_buffer.h).
  std::set<std::string> double_buffered;
};

struct ComputeDef {
  std::string op;                               // "qmatmul"
  Halide::Func output;
  std::vector<Axis> axes;                       // every spatial axis of the output and the stages
  std::vector<ReduceAxis> reduce_axes;
  std::map<std::string, Halide::Func> stages;   // intermediates a schedule may place: "acc", "w", ...
  std::map<std::string, Halide::Expr> extents;  // runtime sizes schedules may test: "M", "N", "K"
  std::vector<Halide::Argument> arguments;      // the runtime inputs, in a fixed order
  GpuKernelHints gpu;

  const Halide::Var& var(const std::string& name) const {
    for (const Axis& a : axes)
      if (a.name == name) return a.var;
    fail(ErrorKind::Invalid, op + " has no axis '" + name + "'");
  }
  const ReduceAxis& reduce(const std::string& name) const {
    for (const ReduceAxis& r : reduce_axes)
      if (r.name == name) return r;
    fail(ErrorKind::Invalid, op + " has no reduction axis '" + name + "'");
  }
  Halide::Func stage(const std::string& name) const {
    auto it = stages.find(name);
    check(it != stages.end(), ErrorKind::Invalid, op + " has no stage '" + name + "'");
    return it->second;
  }
  Halide::Expr extent(const std::string& name) const {
    auto it = extents.find(name);
    check(it != extents.end(), ErrorKind::Invalid, op + " has no extent '" + name + "'");
    return it->second;
  }
};

}  // namespace tetra::dsl
