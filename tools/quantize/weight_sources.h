// Brings a model's weights into the one form the quantizer reads, constant initializers, from
// wherever exporters keep them: Constant nodes, initializers listed as graph inputs (IR < 4), and
// Transpose/Reshape/Cast/Identity chains over a constant that end in a weight.
#pragma once
#include <string>
#include <vector>

namespace onnx {
class ModelProto;
class NodeProto;
}  // namespace onnx

namespace tetra::quantize {

// Whether `node` is an operator whose input 1 is a weight the quantizer handles
// (MatMul, Gemm, Conv, ConvTranspose in the ai.onnx domain).
bool reads_weight(const onnx::NodeProto& node);

// Rewrites the main graph of `model` as described above; returns what it did, for the log.
// External data is read under `base_dir`.
std::vector<std::string> gather_weights(onnx::ModelProto& model, const std::string& base_dir);

}  // namespace tetra::quantize
