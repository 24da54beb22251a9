// How the CLI's subcommands get a model's inputs: the ONNX backend test layout, single files, or
// random data with dynamic dims bound by --shape.
#pragma once
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "runtime/reference_evaluator.h"

namespace tetra::cli {

struct InputOptions {
  std::string test_data;           // folder with input_<i>.pb, bound by position
  std::vector<std::string> files;  // NAME=FILE.pb|FILE.npy
  std::vector<std::string> shapes; // NAME=D0,D1,...
  bool random_inputs = false;
  unsigned seed = 1;
};

void add_input_options(CLI::App* cmd, InputOptions& options);
// Every graph input, or an error naming the one that is missing or wrong.
TensorMap gather_inputs(const Graph& graph, const InputOptions& options);
// DIR/<prefix><i>.pb for i = 0, 1, ... while they exist.
std::vector<std::string> numbered_files(const std::string& dir, const std::string& prefix);

}  // namespace tetra::cli
