// Random QConv cases and their reference check, shared by the CPU kernel tests
// (test_qconv_correctness.cpp) and the GPU ones (test_gpu_conv.cpp): odd H and W, strides, dilations,
// asymmetric pads, groups 2 and C, depthwise multipliers, every quantization form and float weights;
// results against conv_reference (runtime/ops/conv_core.h) with the dequantized weight.
#pragma once
#include <random>
#include <string>
#include <vector>

#include "Halide.h"
#include "dsl/core/qconv_format.h"
#include "importer/graph.h"

namespace tetra::qconv_test {

using dsl::ConvInt4Format;
using dsl::OutputEpilogue;
using dsl::QConvWorkload;

struct WeightSpec {
  DType type = DType::Int4;
  bool zero_point = false;
  ConvInt4Format::Grid grid = ConvInt4Format::Grid::PerAxis;
  int axis = 0;
  int64_t block = 0;  // Blocked only
  bool f16_scale = false;
};

// A fresh weight [M, Cg, KH, KW]: every code value possible, nonzero scales of both signs. A float32 or
// float16 `type` gives an unquantized weight of random values.
QuantizedWeight random_weight(const Shape& shape, const WeightSpec& spec, std::mt19937_64& rng);

// One conv to run: the node's attributes and the input and weight shapes.
struct Case {
  int64_t N, C, H, W, M, group, KH, KW, SH, SW, DH, DW;
  std::vector<int64_t> pads;  // top, left, bottom, right
  bool bias;

  Node node() const;  // a tetra.QConv with these attributes
  Shape weight_shape() const { return {M, C / group, KH, KW}; }
  std::string describe() const;
};

// A random conv with this kernel and stride: depthwise (multiplier 1 or 2), groups of 2-3 channels or
// dense, group 1 with output channels not a multiple of the schedules' channel tiles (kind 1, 0 or 2;
// -1: depthwise or grouped), odd sizes, dilation 1 or 2, asymmetric pads.
Case random_case(int64_t KH, int64_t KW, int64_t SH, int64_t SW, std::mt19937_64& rng, int kind = -1);

QConvWorkload workload_of(const Case& c, const QuantizedWeight& w);

// The weight formats the tests go through.
std::vector<WeightSpec> all_specs();

// Fresh random X, bias and residual for `wl`, and Y filled with NaN (unwritten outputs fail).
struct ConvBuffers {
  Halide::Buffer<float> X, B, Y, R;
};
ConvBuffers random_buffers(const Case& c, const QConvWorkload& wl, std::mt19937_64& rng);

// The reference conv of b.X with `w` (with the bias when c.bias, and the epilogue), in Y's dense order,
// and how far an fp32 kernel may be from each output.
struct Expected {
  std::vector<float> want, tolerance;
};
Expected expected_outputs(const Case& c, const QuantizedWeight& w, const ConvBuffers& b,
                          const OutputEpilogue& epilogue);

// "" when b.Y is the reference conv of b.X with `w` (with the bias when c.bias, and the epilogue) within
// fp32 accumulation error; else how many outputs differ, and the first few.
std::string compare_with_reference(const Case& c, const QuantizedWeight& w, const ConvBuffers& b,
                                   const OutputEpilogue& epilogue = {});

}  // namespace tetra::qconv_test
