// Writes the benchmark workloads of bench/run.sh as int4 ONNX models that both tetra and ONNX
// Runtime load, each with a folder holding one random input:
//   MatMulNBits (block 32, no zero points, accuracy_level 0 = exact fp32) for the GEMV/GEMM shapes,
//   and NAME_a4.onnx beside each, the same weights with accuracy_level 4 (ORT's int8 activations), and
//   NAME_f16.onnx, the same codes with float16 activations and scales (the GPU's float16 GEMV),
//   DequantizeLinear (int4, per output channel) -> Conv for the 3x3 conv.
#include <filesystem>
#include <iostream>
#include <random>

#include "importer/error.h"
#include "runtime/tensor_io.h"
#include "tools/model_builder.h"

using namespace tetra;
namespace fs = std::filesystem;

namespace {

std::mt19937 rng(7);

Tensor uniform(DType dtype, const Shape& shape, double lo, double hi) {
  Tensor t(dtype, shape);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) t.set(i, dtype == DType::Float32 ? u(rng) : std::floor(u(rng)));
  return t;
}

Tensor random_bytes(const Shape& shape) {
  Tensor t(DType::UInt8, shape);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t i = 0; i < t.size(); ++i) t.mutable_bytes()[i] = static_cast<uint8_t>(byte(rng));
  return t;
}

void write_input(const std::string& dir, const std::string& name, const Shape& shape) {
  fs::create_directories(dir);
  write_tensor_pb(dir + "/input_0.pb", uniform(DType::Float32, shape, -1, 1), name);
}

void matmul_nbits(const std::string& dir, const std::string& name, int64_t M, int64_t K, int64_t N) {
  const int64_t block = 32, blocks = (K + block - 1) / block;
  ModelBuilder b(21, name);
  b.opset("com.microsoft", 1);
  b.input("a", DType::Float32, {M, K});
  b.output("y", DType::Float32);
  const Tensor codes = random_bytes({N, blocks, block / 2}),
               scales = uniform(DType::Float32, {N * blocks}, 0.001, 0.01);
  b.initializer("B", codes);
  b.initializer("scales", scales);
  ModelBuilder int8 = b;
  b.node("MatMulNBits", {"a", "B", "scales"}, {"y"},
         {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}, {"accuracy_level", 0}}, "com.microsoft");
  b.save(dir + "/" + name + ".onnx");
  int8.node("MatMulNBits", {"a", "B", "scales"}, {"y"},
            {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}, {"accuracy_level", 4}}, "com.microsoft");
  int8.save(dir + "/" + name + "_a4.onnx");
  ModelBuilder half(21, name + "_f16");
  half.opset("com.microsoft", 1);
  half.input("a", DType::Float16, {M, K});
  half.output("y", DType::Float16);
  half.initializer("B", codes);
  Tensor half_scales(DType::Float16, {N * blocks});
  for (int64_t i = 0; i < half_scales.size(); ++i) half_scales.set(i, scales.get(i));
  half.initializer("scales", half_scales);
  half.node("MatMulNBits", {"a", "B", "scales"}, {"y"},
            {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}, {"accuracy_level", 0}}, "com.microsoft");
  half.save(dir + "/" + name + "_f16.onnx");
  write_input(dir + "/" + name + "_data", "a", {M, K});
}

void conv3x3(const std::string& dir, const std::string& name, int64_t C, int64_t M, int64_t H) {
  ModelBuilder b(21, name);
  b.input("x", DType::Float32, {1, C, H, H});
  b.output("y", DType::Float32);
  b.initializer("w", uniform(DType::Int4, {M, C, 3, 3}, -8, 8));
  b.initializer("s", uniform(DType::Float32, {M}, 0.01, 0.05));
  b.initializer("bias", uniform(DType::Float32, {M}, -0.1, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}});
  b.node("Conv", {"x", "wf", "bias"}, {"y"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.save(dir + "/" + name + ".onnx");
  write_input(dir + "/" + name + "_data", "x", {1, C, H, H});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tetra_make_bench_models OUTDIR\n";
    return 2;
  }
  std::string dir = argv[1];
  try {
    fs::create_directories(dir);
    matmul_nbits(dir, "gemv_1x8192x16384", 1, 8192, 16384);
    matmul_nbits(dir, "gemv_1x4096x4096", 1, 4096, 4096);
    matmul_nbits(dir, "gemm_128x4096x4096", 128, 4096, 4096);
    matmul_nbits(dir, "gemm_1024x1024x1024", 1024, 1024, 1024);
    conv3x3(dir, "conv3x3_64x64_56", 64, 64, 56);
    // ResNet's later stages: small maps, many channels (the GPU estimate's small-grid cases).
    conv3x3(dir, "conv3x3_256x256_14", 256, 256, 14);
    conv3x3(dir, "conv3x3_512x512_7", 512, 512, 7);
  } catch (const Error& e) {
    std::cerr << "tetra_make_bench_models: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
