// Writes the example models used by the quick start and the model-level tests (examples/
// example_models.h) in fp32 (quantized to int4 by `tetra quantize`), each with a folder of random
// inputs in the ONNX backend test layout (and the same values as raw float32 bytes, input_0.bin, for
// the programs in examples/aot_c and aot_cpp). Deterministic: the same files on every run.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "examples/example_models.h"
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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tetra_make_examples OUTDIR\n";
    return 2;
  }
  std::string dir = argv[1];
  try {
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
