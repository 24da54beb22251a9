// Real-shaped models written the way torch.onnx, paddle2onnx and tf2onnx export them, the yardstick of
// the whole-model work: a DBNet-like text detector, a MobileNetV3-small-like classifier and an
// SVTR/ViT-like text recognizer.
//
// fp32 (int4 = false), the exporter traits:
//   * every weight and constant is a `Constant` node (the graph has no initializers);
//   * old opsets with their old operator forms: detector 11, classifier 10, recognizer 9 (Clip with
//     min/max attributes before 11, ReduceMean/Squeeze axes as attributes, Softmax-1 on its last axis);
//   * the IR version that came with that opset (opset 9: IR 4, 10: IR 5, 11: IR 6);
//   * activations written out op by op: HardSwish as Add(3) -> Clip(0, 6) -> Mul(x) -> Div(6),
//     HardSigmoid as Add(3) -> Clip(0, 6) -> Div(6), GELU as Div(sqrt 2) -> Erf -> Add(1) -> Mul(x) ->
//     Mul(0.5), LayerNorm as ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div ->
//     Mul(gamma) -> Add(beta).
// int4 (int4 = true): the same network (same generator state, same fp32 weights) at opset 21 and IR 10,
// every Conv/MatMul/Gemm weight an int4 initializer behind `DequantizeLinear`, quantized by symmetric
// round-to-nearest (scale = max|w| / 7 per block): blocks of 32 along the reduction axis (a conv's
// input channels), one scale per output channel/column when that axis is 32 or shorter. ConvTranspose
// weights stay float32: tetra fuses int4 weights into Conv, MatMul and Gemm only. The other constants
// stay `Constant` nodes, in the opset-21 operator forms.
//
// Weights are random but well-scaled (He init, BatchNormalization near identity), so activations stay
// O(1) through the network and the int4 output stays close to the fp32 one.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tools/model_builder.h"

namespace tetra {

struct ExportedModelOptions {
  bool int4 = false;
  int64_t height = 0, width = 0;  // the image input's; 0 = the model's real size
};

// Input "x" [1, 3, H, W] (real 640x640; H, W multiples of 32), output "maps" [1, 1, H, W]: a probability map.
ModelBuilder exported_detector(std::mt19937& rng, const ExportedModelOptions& options = {});
// Input "x" [1, 3, H, W] (real 224x224; multiples of 32), output "probs" [1, 1000].
ModelBuilder exported_classifier(std::mt19937& rng, const ExportedModelOptions& options = {});
// Input "x" [1, 3, H, W] (real 32x320; multiples of 4), output "probs" [1, W/4, 97]: per-column
// character probabilities for CTC.
ModelBuilder exported_recognizer(std::mt19937& rng, const ExportedModelOptions& options = {});

// The three by name, for the generator and the benchmark.
struct ExportedModel {
  std::string name;    // "detector", "classifier", "recognizer"
  int64_t fp32_opset;  // the opset its fp32 form is exported at
  int64_t real_height, real_width;
  ModelBuilder (*build)(std::mt19937&, const ExportedModelOptions&);
};
const std::vector<ExportedModel>& exported_models();

}  // namespace tetra
