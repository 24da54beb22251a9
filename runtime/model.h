// The front door: a model file becomes a validated, fused, shape-inferred Graph.
#pragma once
#include <map>
#include <string>

#include "importer/graph.h"
#include "importer/onnx_loader.h"

namespace tetra {

// Loads `path`, fails with one error listing every unsupported op (with node names), and infers
// shapes (binding `input_shapes` for dynamic dims when given).
Graph load_model(const std::string& path, const std::map<std::string, Shape>& input_shapes = {},
                 const LoadOptions& options = {});
// The same from an in-memory model; `base_dir` resolves external data ("" forbids it), `what` names
// the model in messages.
Graph load_model(const onnx::ModelProto& model, const std::string& base_dir, const std::string& what,
                 const std::map<std::string, Shape>& input_shapes = {}, const LoadOptions& options = {});

}  // namespace tetra
