// The example models (examples/example_models.h) as files for the tests that run them through the CLI.
// Header-only: only tetra_tests links the example models, not every binary that links test_support.
#pragma once
#include <catch2/catch.hpp>
#include <string>

#include "examples/example_models.h"
#include "tests/test_support.h"

namespace tetra::test {

// The example model `kind` ("mlp" or "cnn") with fresh random weights, quantized to int4 blocks of 16 by
// `tetra quantize`, in `dir`: its path.
inline std::string int4_example(const std::string& dir, const std::string& kind) {
  std::string fp32 = (kind == "mlp" ? example_mlp(rng()) : example_cnn(rng())).save(dir + "/" + kind + ".onnx");
  std::string int4 = dir + "/" + kind + "_int4.onnx";
  REQUIRE(run_command(tetra_cli() + " quantize " + fp32 + " -o " + int4 + " --bits 4 --block-size 16") == 0);
  return int4;
}

}  // namespace tetra::test
