// Bias correction after int4 rounding, as post-training quantizers do (Nagel et al. 2019; NNCF's
// FastBiasCorrection): rounding a layer's weight W to W + dW moves the mean of each output channel
// by dW . E[x], the same amount for every token and pixel. Noise of that kind is no longer noise:
// it survives every later average, and a trained network's activations (post-ReLU/GELU, attention
// averages) have large means, so it is often most of a layer's output error. Given each layer's
// input mean per channel, measured on calibration data with the fp32 model, the shift is computed
// here and subtracted through the layer's bias.
#pragma once
#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "importer/tensor.h"
#include "tools/quantize/calibration.h"

namespace tetra::quantize {

// The value whose channel means a layer's correction needs: its data input (input 0), with the
// channels its weight reduces over (MatMul: the last axis; Gemm: axis 1, or 0 with transA; Conv,
// ConvTranspose: axis 1).
ChannelProbe input_probe(const onnx::NodeProto& layer, DType dtype);

// The mean shift per output channel that the weight's rounding error `rounding` (dequantized minus
// float, in the weight's own layout) causes for inputs of mean `input_mean` per channel. Padding at
// the borders of a conv is not modelled: it changes a few output pixels, not the mean.
std::vector<double> output_shift(const onnx::NodeProto& layer, const Tensor& rounding,
                                 const std::vector<double>& input_mean);

// Adds `shift` (one value per output channel, shaped as it broadcasts against the layer's output:
// [C] for MatMul and Gemm, [C, 1, 1] for a 2-D conv; the layer's float type) to the first output of
// node `layer`:
//   into the layer's own bias (Conv, ConvTranspose, Gemm C, MatMulNBits) when it is a constant of
//   one value per channel that nothing else reads, or as the bias the layer lacks;
//   into a MatMul's following Add of such a constant when that Add is its only reader;
//   else through a new Add after the layer.
// `base_dir` resolves external data.
void add_output_shift(onnx::GraphProto& g, int layer, const Tensor& shift, const std::string& base_dir);

}  // namespace tetra::quantize
