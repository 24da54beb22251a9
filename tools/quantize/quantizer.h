// tetra quantize: weight-only int4 quantization of an fp32/fp16 ONNX model, written as standard
// ONNX that ONNX Runtime runs.
//
// The recipe (quantize_model), in this order:
//   1. gather_weights: Constant nodes, IR < 4 initializer inputs and constant layout chains become
//      plain initializers (weight_sources.h);
//   2. plan: one job per weight of MatMul (B [K,N]), Gemm (B, every transB), Conv (W [M,C/g,...])
//      and ConvTranspose (W [C,M/g,...]); every weight it leaves alone is reported with the reason;
//   3. upgrade_opset to 21 when a DequantizeLinear will be written (opset_upgrade.h);
//   4. quantize each weight once (weight_quantizer.h), always along the reduction axis: blocks of
//      block_size when the axis is longer than a block, else one scale per output channel/column.
//      Conv blocks run over the input channels, which keeps every block inside one kernel position,
//      the only blocking DequantizeLinear can express for conv weights;
//   5. with calibration data, correct each int4 layer's bias for the mean shift its rounding causes
//      (bias_correction.h), and keep in float the layers whose int4 error still hurts the output
//      most (calibration.h);
//   6. write the chosen weights as
//        dq:          int4/uint4 initializer -> DequantizeLinear (axis, block_size) -> the consumer;
//        matmulnbits: MatMul and Gemm (transA=0, alpha=1; bias folded with beta) become
//                     com.microsoft.MatMulNBits with B [N, blocks, block/2]; the rest uses dq.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "runtime/executor.h"
#include "tools/quantize/weight_quantizer.h"

namespace onnx {
class ModelProto;
}

namespace tetra::quantize {

struct QuantizeOptions {
  std::string format = "dq";  // "dq" or "matmulnbits"
  int64_t block_size = 32;
  WeightQuantOptions weights;
  std::string calibration_data;  // a folder of test_data_set_*/input_<i>.pb; "" quantizes every weight
  double min_cosine = 0.99;      // the output cosine against fp32 that calibration must keep
  std::string validation_data;   // with calibration: inputs not calibrated on, to report the cosine on
  Backend calibration_backend = Backend::Halide;
  bool bias_correction = true;  // with calibration data: take each int4 layer's mean output shift off its bias
};
// Fails naming the option at fault.
void validate(const QuantizeOptions& options);

struct LayerReport {
  std::string layer, op, weight, shape, granularity;
  ErrorStats error;
  int64_t float_bytes = 0;
  std::optional<double> cosine_alone;  // with calibration: output cosine with only this weight int4
};

struct QuantizeReport {
  std::vector<LayerReport> quantized;
  std::vector<LayerReport> kept_float;  // chosen by calibration
  std::vector<std::string> skipped;     // "Conv 'c1': why" for every weight left alone
  std::vector<std::string> notes;       // what was rewritten on the way (opset upgrade, constants)
  int64_t weight_bytes_before = 0;      // of the quantized weights, in float
  int64_t weight_bytes_after = 0;       // the same weights in int4 with their scales
  int64_t candidate_weight_bytes = 0;   // every constant MatMul/Gemm/Conv/ConvTranspose weight, in float
  std::optional<double> cosine;         // with calibration: the written model's output cosine (worst data set)
  int calibration_sets = 0;
  std::optional<double> validation_cosine;  // the same on the validation data
  int bias_corrected = 0;                   // int4 layers whose bias took their mean output shift
};

// Quantizes `model` in place (external data read under `base_dir`); throws a tetra::Error naming
// the node, tensor or option at fault and then leaves `model` as it was.
QuantizeReport quantize_model(onnx::ModelProto& model, const std::string& base_dir, const QuantizeOptions& options);

// Reads `input`, quantizes it and writes `output` atomically (a single file: external data is
// inlined, up to protobuf's 2 GiB).
QuantizeReport quantize_file(const std::string& input, const std::string& output, const QuantizeOptions& options);

}  // namespace tetra::quantize
