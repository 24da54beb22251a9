// What the Halide backend's elementwise and data-movement node kernels share (halide_elementwise.cpp,
// halide_data_movement.cpp): the base class with the KernelInfo bookkeeping, and small helpers.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/kernel_source.h"
#include "runtime/op_registry.h"
#include "runtime/reference_evaluator.h"

namespace tetra {

inline int to_int(int64_t v, const Node& node) {
  if (v > INT32_MAX)
    fail(ErrorKind::Unsupported,
         node.label() + ": a dimension of " + std::to_string(v) + " elements is too large for a Halide kernel");
  return static_cast<int>(v);
}

// The float32 result as a tensor of `dtype` (float16 results are rounded once from float32).
inline Tensor as_dtype(Tensor y, DType dtype) {
  if (dtype == DType::Float32) return y;
  Tensor out(dtype, y.shape());
  const float* v = y.data<float>();
  for (int64_t i = 0; i < y.size(); ++i) out.set(i, v[i]);
  return out;
}

inline bool is_fp(DType t) { return t == DType::Float32 || t == DType::Float16; }

// No Halide kernel for this node: says why (the executor then binds the reference kernel).
inline std::nullptr_t decline(std::string* why_not, std::string reason) {
  *why_not = std::move(reason);
  return nullptr;
}

inline DType dtype_of(const Graph& graph, const std::string& name) {
  const ValueInfo* v = graph.find_value(name);
  return v ? v->dtype : DType::Undefined;
}

// The value's shape when every dim is known statically.
inline std::optional<Shape> static_shape(const Graph& graph, const std::string& name) {
  const ValueInfo* v = graph.find_value(name);
  if (!v || !v->has_shape || !fully_known(v->shape)) return std::nullopt;
  return to_shape(v->shape);
}

// Base of the kernels: the KernelInfo bookkeeping, and the reference kernel for the rare runtime
// inputs a kernel does not take (empty tensors, a LayerNorm Scale that varies along rows).
class HalideKernel : public NodeKernel {
 public:
  HalideKernel(const Node& node, KernelSource& source) : node_(node), source_(source) {}
  KernelInfo info() const override { return {node_.label(), "halide", detail_, compile_ms_}; }

 protected:
  std::vector<Tensor> reference(const std::vector<Tensor>& inputs) const {
    return op_for(node_).compute(node_, inputs);
  }

  // The code for `request` (asked once per signature by each kernel).
  KernelCode code_for(KernelRequest request) {
    request.node = node_.label();
    KernelCode code = source_.get(request);
    compile_ms_ += code.compile_ms;
    return code;
  }
  int lanes() const { return source_.vector_lanes(); }

  const Node& node_;
  KernelSource& source_;
  std::string detail_ = "not compiled yet";
  double compile_ms_ = 0;
};

}  // namespace tetra
