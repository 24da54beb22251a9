// Writes the example models used by the quick start and the model-level tests (examples/
// example_models.h) in fp32 (quantized to int4 by `tetra quantize`), each with a folder of random
// inputs in the ONNX backend test layout (and the same values as raw float32 bytes, input_0.bin, for
// the programs in examples/aot_c and aot_cpp). Deterministic: the same files on every run.
//   tetra_make_examples OUTDIR
//   tetra_make_examples --exported OUTDIR [--size MODEL=HxW]...
// The second form writes the exporter-style models (examples/exported_models.h) at their real input
// size or the one given: NAME_fp32.onnx, NAME_int4.onnx (the same weights) and NAME_data/input_0.pb.
#include <cstdio>
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

void write_exported(const std::string& dir, const std::vector<std::string>& sizes) {
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
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool exported = !args.empty() && args[0] == "--exported";
  std::vector<std::string> sizes;
  for (size_t i = 2; exported && i + 1 < args.size() && args[i] == "--size"; i += 2) sizes.push_back(args[i + 1]);
  if (exported ? args.size() != 2 + 2 * sizes.size() : args.size() != 1) {
    std::cerr << "usage: tetra_make_examples OUTDIR\n"
                 "       tetra_make_examples --exported OUTDIR [--size MODEL=HxW]...\n";
    return 2;
  }
  try {
    if (exported) {
      write_exported(args[1], sizes);
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
