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

}  // namespace tetra
