// The example models of the quick start and the model-level tests: a small MLP (MatMul + bias + Relu,
// a residual, LayerNormalization, SiLU, Gemm; dynamic batch) and a small CNN (Conv + BatchNormalization
// + Relu, depthwise Conv + HardSwish, a residual, MaxPool, Resize, strided Conv, GlobalAveragePool,
// Gemm, Softmax), in fp32. The same generator state gives the same model.
#pragma once
#include <random>

#include "tools/model_builder.h"

namespace tetra {

ModelBuilder example_mlp(std::mt19937& rng);  // input "x" [batch, 64], output "logits" [batch, 10]
ModelBuilder example_cnn(std::mt19937& rng);  // input "image" [1, 3, 32, 32], output "probs" [1, 10]
// Uniform float32 values in [lo, hi].
Tensor example_uniform(std::mt19937& rng, const Shape& shape, double lo, double hi);

}  // namespace tetra
