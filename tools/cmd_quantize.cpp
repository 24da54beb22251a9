// tetra quantize: the command line of the quantizer in tools/quantize/ (which documents the recipe).
#include <cstdio>
#include <memory>

#include "importer/error.h"
#include "tools/commands.h"
#include "tools/quantize/quantizer.h"

namespace tetra::cli {
namespace {

struct Options {
  std::string model, output, backend = "halide";
  int bits = 4;
  bool plain_max = false;
  quantize::QuantizeOptions quantize;
};

std::string human_size(int64_t bytes) {
  char buf[32];
  if (bytes < 1024) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else if (bytes < (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  return buf;
}

void print_layers(const std::vector<quantize::LayerReport>& layers) {
  for (const auto& r : layers) {
    std::printf("%-24s %-13s %-24s %-16s %-28s %12.3e %10.3e", r.layer.c_str(), r.op.c_str(), r.weight.c_str(),
                r.shape.c_str(), r.granularity.c_str(), r.error.max_abs, r.error.rel_rms);
    if (r.cosine_alone) std::printf(" %12.6f", *r.cosine_alone);
    std::printf("\n");
  }
}

void run_quantize(Options opt) {
  check(opt.bits == 4, ErrorKind::Invalid,
        "--bits " + std::to_string(opt.bits) + " is not supported: tetra quantizes weights to 4 bits only");
  opt.quantize.weights.search_clip = !opt.plain_max;
  opt.quantize.calibration_backend = parse_backend(opt.backend);
  const quantize::QuantizeReport r = quantize::quantize_file(opt.model, opt.output, opt.quantize);

  const bool calibrated = r.cosine.has_value();
  std::printf("%-24s %-13s %-24s %-16s %-28s %12s %10s%s\n", "layer", "op", "weight", "shape", "granularity",
              "max abs err", "rel RMS", calibrated ? "  cosine alone" : "");
  print_layers(r.quantized);
  if (!r.kept_float.empty()) {
    std::printf("kept in float (their int4 error cost the output most for the bytes they save):\n");
    print_layers(r.kept_float);
  }
  for (const std::string& note : r.notes) std::printf("note: %s\n", note.c_str());
  for (const std::string& skip : r.skipped) std::printf("skipped %s\n", skip.c_str());
  const double int4_share = r.candidate_weight_bytes ? 100.0 * r.weight_bytes_before / r.candidate_weight_bytes : 0.0;
  std::printf("quantized %zu weights (%s, %s%s): weights %s -> %s; %.1f%% of the MatMul/Gemm/Conv weight bytes are int4\n",
              r.quantized.size(), opt.quantize.weights.asymmetric ? "asymmetric uint4" : "symmetric int4",
              opt.quantize.format.c_str(), opt.plain_max ? ", max-abs scales" : ", searched clip ratios",
              human_size(r.weight_bytes_before).c_str(), human_size(r.weight_bytes_after).c_str(), int4_share);
  if (calibrated)
    std::printf(
        "calibration: %d data set(s), %d int4 layer(s) bias-corrected, %zu weight(s) kept in float, output cosine %.6f "
        "(target %g)\n",
        r.calibration_sets, r.bias_corrected, r.kept_float.size(), *r.cosine, opt.quantize.min_cosine);
  if (r.validation_cosine)
    std::printf("validation: output cosine %.6f on the data of --validation-data\n", *r.validation_cosine);
  std::printf("wrote %s\n", opt.output.c_str());
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize the weights of an fp32/fp16 ONNX model to int4");
  cmd->add_option("model", opt->model, "input ONNX model")->required();
  cmd->add_option("-o,--output", opt->output, "output ONNX model (written atomically)")->required();
  cmd->add_option("--bits", opt->bits, "weight bits (only 4)")->capture_default_str();
  cmd->add_option("--block-size", opt->quantize.block_size, "elements per scale along the reduction axis")->capture_default_str();
  cmd->add_flag("--asymmetric", opt->quantize.weights.asymmetric, "uint4 with per-block zero points (default: symmetric int4)");
  cmd->add_option("--format", opt->quantize.format, "dq (DequantizeLinear, opset 21) or matmulnbits (com.microsoft)")->capture_default_str();
  cmd->add_flag("--max-abs-scales", opt->plain_max, "scale each block by its largest weight instead of searching clip ratios");
  cmd->add_option("--calibration-data", opt->quantize.calibration_data,
                  "folder of test_data_set_*/input_<i>.pb: keep in float the layers the output needs")->check(CLI::ExistingDirectory);
  cmd->add_option("--min-cosine", opt->quantize.min_cosine, "output cosine against fp32 to keep with --calibration-data")->capture_default_str();
  cmd->add_option(
         "--validation-data", opt->quantize.validation_data,
         "with --calibration-data: inputs not calibrated on, in the same layout, to report the output cosine on")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag(
      "--no-bias-correction", [opt](int64_t) { opt->quantize.bias_correction = false; },
      "with --calibration-data: leave the biases as they are");
  cmd->add_option("--backend", opt->backend, "executor for the calibration runs: halide or reference")->capture_default_str();
  cmd->callback([opt] { run_quantize(*opt); });
}

}  // namespace tetra::cli
