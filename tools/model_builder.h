// Builds small ONNX models (tests, example models, benchmarks): value infos, initializers from tetra tensors, nodes with
// attributes, opset imports. Models use IR version 10 (needed for int4) and opset 21 by default.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "importer/tensor.h"

namespace tetra {

// One node attribute; the constructors pick the ONNX attribute type from the value's C++ type,
// so nodes read naturally: b.node("Gemm", {"a", "w"}, {"y"}, {{"transB", 1}, {"alpha", 0.5f}}).
struct Attr {
  Attr(const std::string& name, int64_t value);
  Attr(const std::string& name, int value) : Attr(name, int64_t(value)) {}
  Attr(const std::string& name, float value);
  Attr(const std::string& name, double value) : Attr(name, float(value)) {}
  Attr(const std::string& name, const std::string& value);
  Attr(const std::string& name, const char* value) : Attr(name, std::string(value)) {}
  Attr(const std::string& name, const std::vector<int64_t>& values);
  Attr(const std::string& name, const std::vector<float>& values);
  Attr(const std::string& name, const Tensor& value);
  onnx::AttributeProto proto;
};

class ModelBuilder {
 public:
  explicit ModelBuilder(int64_t opset = 21, const std::string& name = "test");

  // Imports `domain` at `version` (e.g. "com.microsoft", 1); replaces an existing import.
  ModelBuilder& opset(const std::string& domain, int64_t version);
  // A graph input; a dim of -1 becomes a symbolic dim.
  ModelBuilder& input(const std::string& name, DType dtype, const Shape& shape);
  // A graph output with its element type only (shapes are left to inference).
  ModelBuilder& output(const std::string& name, DType dtype);
  ModelBuilder& initializer(const std::string& name, const Tensor& tensor);
  onnx::NodeProto& node(const std::string& op_type, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::vector<Attr>& attrs = {},
                        const std::string& domain = "");

  onnx::ModelProto& proto() { return model_; }
  // Writes the model to `path` and returns the path.
  std::string save(const std::string& path) const;

 private:
  onnx::ModelProto model_;
  int node_count_ = 0;
};

}  // namespace tetra
