// Reads an ONNX model (ModelProto via libonnx's protobuf classes) into tetra's graph IR.
#pragma once
#include <string>

#include "importer/graph.h"

namespace onnx {
class TensorProto;
class ModelProto;
}  // namespace onnx

namespace tetra {

struct LoadOptions {
  bool fuse_int4 = true;  // rewrite int4 weight patterns into packed tetra.QMatMul / tetra.QConv nodes
  // and MatMul/Gemm/Conv with a constant float32/float16 weight into the same nodes, unquantized
  bool fuse_float = true;
  // put back HardSwish, HardSigmoid, Gelu and LayerNormalization written out op by op (load_model)
  bool recognise_decomposed = true;
  bool fuse_epilogues = true;  // fold BatchNormalization, bias, activation, residual into them (load_model)
};

// Loads, validates and fuses a model file. Shapes are inferred afterwards by infer_shapes().
// External tensor data is read relative to the model's folder and never outside it.
Graph load_onnx(const std::string& path, const LoadOptions& options = {});
// The same from an in-memory ModelProto; `base_dir` resolves external data ("" forbids it).
Graph import_model(const onnx::ModelProto& model, const std::string& base_dir, const LoadOptions& options = {});
// Parses a serialized ModelProto, failing clearly on truncated or corrupt bytes.
onnx::ModelProto parse_model(const std::string& bytes, const std::string& what);
onnx::ModelProto read_model_file(const std::string& path);

// TensorProto <-> Tensor. Handles raw_data and the typed fields, 4-bit types in both raw_data and
// int32_data (one packed byte per entry, masked with 0xFF), and external data under `base_dir`.
Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir = "");
// Always writes raw_data, 4-bit types packed.
void tensor_to_proto(const Tensor& tensor, const std::string& name, onnx::TensorProto* proto);

}  // namespace tetra
