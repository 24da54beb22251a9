#include "examples/example_models.h"

#include <cmath>

namespace tetra {

Tensor example_uniform(std::mt19937& rng, const Shape& shape, double lo, double hi) {
  Tensor t(DType::Float32, shape);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) t.set(i, u(rng));
  return t;
}

namespace {

// He-style scale so activations stay O(1) through the layers.
Tensor weight(std::mt19937& rng, const Shape& shape, int64_t fan_in) {
  double a = std::sqrt(3.0 / static_cast<double>(fan_in));
  return example_uniform(rng, shape, -a, a);
}

void add_batchnorm(std::mt19937& rng, ModelBuilder& b, const std::string& prefix, int64_t c) {
  b.initializer(prefix + "_scale", example_uniform(rng, {c}, 0.5, 1.5));
  b.initializer(prefix + "_bias", example_uniform(rng, {c}, -0.2, 0.2));
  b.initializer(prefix + "_mean", example_uniform(rng, {c}, -0.1, 0.1));
  b.initializer(prefix + "_var", example_uniform(rng, {c}, 0.5, 1.5));
}

}  // namespace

ModelBuilder example_mlp(std::mt19937& rng) {
  ModelBuilder b(17, "mlp");
  b.input("x", DType::Float32, {-1, 64});
  b.output("logits", DType::Float32);
  b.initializer("w1", weight(rng, {64, 256}, 64));
  b.initializer("b1", example_uniform(rng, {256}, -0.1, 0.1));
  b.initializer("w2", weight(rng, {256, 256}, 256));
  b.initializer("b2", example_uniform(rng, {256}, -0.1, 0.1));
  b.initializer("ln_g", example_uniform(rng, {256}, 0.8, 1.2));
  b.initializer("ln_b", example_uniform(rng, {256}, -0.1, 0.1));
  b.initializer("w3", weight(rng, {10, 256}, 256));
  b.initializer("b3", example_uniform(rng, {10}, -0.1, 0.1));
  b.node("MatMul", {"x", "w1"}, {"h1"});
  b.node("Add", {"h1", "b1"}, {"h1b"});
  b.node("Relu", {"h1b"}, {"a1"});
  b.node("MatMul", {"a1", "w2"}, {"h2"});
  b.node("Add", {"h2", "b2"}, {"h2b"});
  b.node("Add", {"h2b", "a1"}, {"res"});  // residual
  b.node("LayerNormalization", {"res", "ln_g", "ln_b"}, {"ln"}, {{"axis", -1}});
  b.node("Sigmoid", {"ln"}, {"sig"});
  b.node("Mul", {"ln", "sig"}, {"silu"});
  b.node("Gemm", {"silu", "w3", "b3"}, {"logits"}, {{"transB", 1}});
  return b;
}

ModelBuilder example_cnn(std::mt19937& rng) {
  ModelBuilder b(17, "cnn");
  b.input("image", DType::Float32, {1, 3, 32, 32});
  b.output("probs", DType::Float32);
  b.initializer("c1_w", weight(rng, {32, 3, 3, 3}, 27));
  add_batchnorm(rng, b, "bn1", 32);
  b.initializer("dw_w", weight(rng, {32, 1, 3, 3}, 9));
  add_batchnorm(rng, b, "bn2", 32);
  b.initializer("pw_w", weight(rng, {32, 32, 1, 1}, 32));
  b.initializer("pw_b", example_uniform(rng, {32}, -0.1, 0.1));
  b.initializer("c3_w", weight(rng, {64, 32, 3, 3}, 288));
  b.initializer("c3_b", example_uniform(rng, {64}, -0.1, 0.1));
  b.initializer("up_scales", Tensor::from_doubles(DType::Float32, {4}, {1, 1, 2, 2}));
  b.initializer("fc_w", weight(rng, {64, 10}, 64));
  b.initializer("fc_b", example_uniform(rng, {10}, -0.1, 0.1));
  b.node("Conv", {"image", "c1_w"}, {"c1"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("BatchNormalization", {"c1", "bn1_scale", "bn1_bias", "bn1_mean", "bn1_var"}, {"n1"});
  b.node("Relu", {"n1"}, {"r1"});
  b.node("Conv", {"r1", "dw_w"}, {"dw"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"group", 32}});
  b.node("BatchNormalization", {"dw", "bn2_scale", "bn2_bias", "bn2_mean", "bn2_var"}, {"n2"});
  b.node("HardSwish", {"n2"}, {"h2"});
  b.node("Conv", {"h2", "pw_w", "pw_b"}, {"pw"});
  b.node("Add", {"pw", "r1"}, {"res"});  // residual
  b.node("MaxPool", {"res"}, {"pool"}, {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}});
  b.node("Resize", {"pool", "", "up_scales"}, {"up"}, {{"mode", "nearest"}});
  b.node("Conv", {"up", "c3_w", "c3_b"}, {"c3"},
         {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"strides", std::vector<int64_t>{2, 2}}});
  b.node("Relu", {"c3"}, {"r3"});
  b.node("GlobalAveragePool", {"r3"}, {"gap"});
  b.node("Flatten", {"gap"}, {"flat"});
  b.node("Gemm", {"flat", "fc_w", "fc_b"}, {"logits"});
  b.node("Softmax", {"logits"}, {"probs"}, {{"axis", 1}});
  return b;
}

}  // namespace tetra
