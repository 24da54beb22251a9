#include "tools/model_inputs.h"

#include <filesystem>
#include <random>

#include "importer/error.h"
#include "runtime/tensor_io.h"
#include "tools/cli_util.h"

namespace tetra::cli {
namespace fs = std::filesystem;

void add_input_options(CLI::App* cmd, InputOptions& opt) {
  cmd->add_option("--test-data", opt.test_data,
                  "folder with input_<i>.pb (bound by position) and optionally output_<i>.pb to check against");
  cmd->add_option("--input", opt.files, "NAME=FILE.pb|FILE.npy for one input (repeatable)");
  cmd->add_option("--shape", opt.shapes, "NAME=D0,D1,... binds a dynamic input shape (repeatable)");
  cmd->add_flag("--random-inputs", opt.random_inputs, "fill inputs not given otherwise with random data");
  cmd->add_option("--seed", opt.seed, "seed for --random-inputs");
}

std::vector<std::string> numbered_files(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> files;
  for (int i = 0;; ++i) {
    fs::path p = fs::path(dir) / (prefix + std::to_string(i) + ".pb");
    if (!fs::exists(p)) break;
    files.push_back(p.string());
  }
  return files;
}

namespace {

Tensor random_input(const ValueInfo& info, const Shape& shape, std::mt19937& rng) {
  try {
    checked_element_count(info.dtype, shape);
  } catch (const Error& e) {
    fail(e.kind(), "input '" + info.name + "': " + e.what());
  }
  Tensor t(info.dtype, shape);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 3);
  for (int64_t i = 0; i < t.size(); ++i) t.set(i, is_float(info.dtype) ? uni(rng) : small(rng));
  return t;
}

bool has_input(const Graph& graph, const std::string& name) {
  for (const ValueInfo& in : graph.inputs)
    if (in.name == name) return true;
  return false;
}

}  // namespace

TensorMap gather_inputs(const Graph& graph, const InputOptions& opt) {
  std::map<std::string, Shape> shapes;
  for (const std::string& s : opt.shapes) shapes.insert(parse_shape_binding(s));
  for (const auto& [name, shape] : shapes)
    check(has_input(graph, name), ErrorKind::Invalid, "--shape " + name + ": the model has no input '" + name + "'");
  TensorMap inputs;
  if (!opt.test_data.empty()) {
    check(fs::is_directory(opt.test_data), ErrorKind::Io, "test data folder '" + opt.test_data + "' does not exist");
    std::vector<std::string> files = numbered_files(opt.test_data, "input_");
    check(files.size() <= graph.inputs.size(), ErrorKind::Invalid,
          "'" + opt.test_data + "' holds " + std::to_string(files.size()) + " inputs but the model takes " +
              std::to_string(graph.inputs.size()));
    // Bound by position, as the ONNX backend runner does: the names inside the files may differ.
    for (size_t i = 0; i < files.size(); ++i) inputs[graph.inputs[i].name] = read_tensor_pb(files[i]).tensor;
  }
  for (const std::string& binding : opt.files) {
    auto [name, path] = parse_file_binding(binding);
    check(has_input(graph, name), ErrorKind::Invalid, "--input " + name + ": the model has no input '" + name + "'");
    inputs[name] = read_tensor_file(path);
  }
  std::mt19937 rng(opt.seed);
  for (const ValueInfo& in : graph.inputs) {
    if (inputs.count(in.name)) continue;
    check(opt.random_inputs, ErrorKind::Invalid,
          "input '" + in.name + "' was not given (use --test-data, --input " + in.name + "=FILE or --random-inputs)");
    Shape shape;
    auto bound = shapes.find(in.name);
    if (bound != shapes.end()) {
      shape = bound->second;
    } else {
      check(in.has_shape && fully_known(in.shape), ErrorKind::Invalid,
            "input '" + in.name + "' has dynamic shape " + shape_str(in.shape) + ": give it with --shape " + in.name +
                "=D0,D1,...");
      shape = to_shape(in.shape);
    }
    inputs[in.name] = random_input(in, shape, rng);
  }
  return inputs;
}


}  // namespace tetra::cli
