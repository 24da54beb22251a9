// Moves a model's ai.onnx nodes to a newer opset, one adapter per operator whose definition
// changed on the way (attributes that became inputs, the softmax family's flattening, Upsample,
// Resize's coordinate modes, ...). tetra does this itself so that int4 DequantizeLinear (opset 21)
// can be added to old exported models without an external converter.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace onnx {
class ModelProto;
}

namespace tetra::quantize {

// Rewrites every ai.onnx node of `model` (subgraphs included) from the model's opset to `target`
// and sets the import to `target`. Element types and ranks that an adapter needs come from tetra's
// shape inference (external data is read under `base_dir`). Throws a tetra::Error naming the node
// and its opset when an operator cannot be converted; `model` is then unchanged. Returns one line
// per kind of rewrite, for the log.
std::vector<std::string> upgrade_opset(onnx::ModelProto& model, int64_t target, const std::string& base_dir = "");

}  // namespace tetra::quantize
