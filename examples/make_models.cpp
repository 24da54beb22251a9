// Writes the example models used by the quick start and the model-level tests (examples/
// example_models.h) in fp32 (quantized to int4 by `tetra quantize`), each with a folder of random
// inputs in the ONNX backend test layout (and the same values as raw float32 bytes, input_0.bin, for
// the programs in examples/aot_c and aot_cpp). Deterministic: the same files on every run.
//   tetra_make_examples OUTDIR
//   tetra_make_examples --exported OUTDIR [--size MODEL=HxW]... [--calibration-sets N]
// The second form writes the exporter-style models (examples/exported_models.h) at their real input
// size or the one given: NAME_fp32.onnx, NAME_int4.onnx (the same weights) and NAME_data/input_0.pb;
// with --calibration-sets, also N more random inputs for `tetra quantize --calibration-data` in
// NAME_calibration/test_data_set_<i>/input_0.pb.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <tuple>

#include "examples/example_models.h"
#include "examples/exported_models.h"
#include "importer/error.h"
#include "runtime/tensor_io.h"

using namespace tetra;
namespace fs = std::filesystem;

namespace {

std::mt19937 rng(2024);

void write_inputs(const std::string& dir, const std::string& name, const Shape& shape) {
  fs::create_directories(dir);
  Tensor t = example_uniform(rng, shape, -1, 1);
  write_tensor_pb(dir + "/input_0.pb", t, name);
  std::ofstream raw(dir + "/input_0.bin", std::ios::binary);
  raw.write(reinterpret_cast<const char*>(t.bytes()), t.byte_size());
  check(bool(raw), ErrorKind::Io, "cannot write " + dir + "/input_0.bin");
}

// "HxW" -> {H, W}.
std::pair<int64_t, int64_t> parse_size(const std::string& text) {
  long long h = 0, w = 0;
  char rest = 0;
  check(std::sscanf(text.c_str(), "%lldx%lld%c", &h, &w, &rest) == 2, ErrorKind::Invalid,
        "--size wants MODEL=HxW, got '" + text + "'");
  return {h, w};
}

void write_exported(const std::string& dir, const std::vector<std::string>& sizes, int calibration_sets) {
  std::map<std::string, ExportedModelOptions> options;
  for (const std::string& size : sizes) {
    size_t eq = size.find('=');
    std::string model = size.substr(0, eq);
    bool known = false;
    for (const ExportedModel& m : exported_models()) known = known || m.name == model;
    check(eq != std::string::npos && known, ErrorKind::Invalid,
          "--size wants MODEL=HxW with MODEL detector, classifier or recognizer, got '" + size + "'");
    std::tie(options[model].height, options[model].width) = parse_size(size.substr(eq + 1));
  }
  fs::create_directories(dir);
  std::mt19937 seeds(2025);
  for (const ExportedModel& m : exported_models()) {
    ExportedModelOptions fp32 = options[m.name], int4 = fp32;
    int4.int4 = true;
    const unsigned seed = seeds();
    std::mt19937 fp32_rng(seed), int4_rng(seed);  // the same weights in both
    ModelBuilder model = m.build(fp32_rng, fp32);
    std::cout << "wrote " << model.save(dir + "/" + m.name + "_fp32.onnx") << "\n";
    std::cout << "wrote " << m.build(int4_rng, int4).save(dir + "/" + m.name + "_int4.onnx") << "\n";
    const auto& input = model.proto().graph().input(0);
    Shape shape;
    for (const auto& d : input.type().tensor_type().shape().dim()) shape.push_back(d.dim_value());
    std::string data = dir + "/" + m.name + "_data";
    fs::create_directories(data);
    write_tensor_pb(data + "/input_0.pb", example_uniform(rng, shape, -1, 1), input.name());
    std::mt19937 calibration_rng(seed + 1);  // leaves the other files as they are without it
    for (int i = 0; i < calibration_sets; ++i) {
      std::string set = dir + "/" + m.name + "_calibration/test_data_set_" + std::to_string(i);
      fs::create_directories(set);
      write_tensor_pb(set + "/input_0.pb", example_uniform(calibration_rng, shape, -1, 1), input.name());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool exported = !args.empty() && args[0] == "--exported";
  std::vector<std::string> sizes;
  int calibration_sets = 0;
  bool usage_ok = exported ? args.size() >= 2 : args.size() == 1;
  for (size_t i = 2; exported && i < args.size(); i += 2) {
    if (i + 1 >= args.size()) usage_ok = false;
    else if (args[i] == "--size") sizes.push_back(args[i + 1]);
    else if (args[i] == "--calibration-sets") calibration_sets = std::atoi(args[i + 1].c_str());
    else usage_ok = false;
  }
  if (!usage_ok || calibration_sets < 0) {
    std::cerr << "usage: tetra_make_examples OUTDIR\n"
                 "       tetra_make_examples --exported OUTDIR [--size MODEL=HxW]... [--calibration-sets N]\n";
    return 2;
  }
  try {
    if (exported) {
      write_exported(args[1], sizes, calibration_sets);
      return 0;
    }
    std::string dir = args[0];
    fs::create_directories(dir);
    std::cout << "wrote " << example_mlp(rng).save(dir + "/mlp.onnx") << "\n";
    write_inputs(dir + "/mlp_data", "x", {4, 64});
    std::cout << "wrote " << example_cnn(rng).save(dir + "/cnn.onnx") << "\n";
    write_inputs(dir + "/cnn_data", "image", {1, 3, 32, 32});
  } catch (const Error& e) {
    std::cerr << "tetra_make_examples: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
