// tetra run: evaluate a model on inputs from files (the ONNX backend test layout) or random data.
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <random>

#include "importer/error.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "runtime/tensor_io.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

namespace tetra::cli {
namespace fs = std::filesystem;

namespace {

struct RunOptions {
  std::string model;
  std::string test_data;
  std::string output_dir;
  std::string backend = "reference";
  std::vector<std::string> inputs;
  std::vector<std::string> shapes;
  bool random_inputs = false;
  unsigned seed = 1;
};

// ONNX backend test tolerance: |got - expected| <= atol + rtol * |expected|.
constexpr double kAtol = 1e-7;
constexpr double kRtol = 1e-3;

Tensor random_input(const ValueInfo& info, const Shape& shape, std::mt19937& rng) {
  Tensor t(info.dtype, shape);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 3);
  for (int64_t i = 0; i < t.size(); ++i) t.set(i, is_float(info.dtype) ? uni(rng) : small(rng));
  return t;
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

bool has_input(const Graph& graph, const std::string& name) {
  for (const ValueInfo& in : graph.inputs)
    if (in.name == name) return true;
  return false;
}

TensorMap gather_inputs(const Graph& graph, const RunOptions& opt, const std::map<std::string, Shape>& shapes) {
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
  for (const std::string& binding : opt.inputs) {
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

// Prints the error of each output against the expected files; returns false when any is outside
// the ONNX backend tolerance.
bool compare_outputs(const Graph& graph, const TensorMap& outputs, const std::vector<std::string>& expected_files) {
  bool ok = true;
  check(expected_files.size() == graph.outputs.size(), ErrorKind::Invalid,
        "the test data holds " + std::to_string(expected_files.size()) + " outputs but the model has " +
            std::to_string(graph.outputs.size()));
  for (size_t i = 0; i < expected_files.size(); ++i) {
    const std::string& name = graph.outputs[i].name;
    const Tensor& got = outputs.at(name);
    Tensor expected = read_tensor_pb(expected_files[i]).tensor;
    std::cout << "output " << i << " '" << name << "': ";
    if (got.dtype() != expected.dtype() || got.shape() != expected.shape()) {
      std::cout << "MISMATCH: got " << dtype_name(got.dtype()) << shape_str(got.shape()) << ", expected "
                << dtype_name(expected.dtype()) << shape_str(expected.shape()) << "\n";
      ok = false;
      continue;
    }
    double max_abs = 0, max_rel = 0;
    int64_t bad = 0;
    for (int64_t k = 0; k < got.size(); ++k) {
      double g = got.get(k), e = expected.get(k);
      if (std::isnan(e) && std::isnan(g)) continue;
      double diff = std::fabs(g - e);
      if (std::isnan(diff)) diff = INFINITY;
      max_abs = std::max(max_abs, diff);
      if (e != 0) max_rel = std::max(max_rel, diff / std::fabs(e));
      if (!(diff <= kAtol + kRtol * std::fabs(e))) ++bad;
    }
    std::cout << "max abs error " << std::setprecision(3) << max_abs << ", max rel error " << max_rel;
    if (bad) std::cout << "  FAIL (" << bad << " of " << got.size() << " elements outside tolerance)";
    std::cout << "\n";
    ok = ok && bad == 0;
  }
  return ok;
}

void run(const RunOptions& opt) {
  check(opt.backend == "reference", ErrorKind::Invalid, "unknown backend '" + opt.backend + "' (available: reference)");
  std::map<std::string, Shape> shapes;
  for (const std::string& s : opt.shapes) shapes.insert(parse_shape_binding(s));
  Graph graph = load_model(opt.model);
  TensorMap inputs = gather_inputs(graph, opt, shapes);
  TensorMap outputs = run_reference(graph, inputs);

  if (!opt.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(opt.output_dir, ec);
    check(fs::is_directory(opt.output_dir), ErrorKind::Io, "cannot create output folder '" + opt.output_dir + "'");
    for (size_t i = 0; i < graph.outputs.size(); ++i) {
      const std::string& name = graph.outputs[i].name;
      write_tensor_pb((fs::path(opt.output_dir) / ("output_" + std::to_string(i) + ".pb")).string(), outputs.at(name), name);
    }
  }
  std::vector<std::string> expected =
      opt.test_data.empty() ? std::vector<std::string>{} : numbered_files(opt.test_data, "output_");
  if (!expected.empty()) {
    if (!compare_outputs(graph, outputs, expected)) exit_status = 1;
  } else {
    for (const ValueInfo& out : graph.outputs) {
      const Tensor& t = outputs.at(out.name);
      std::cout << "output '" << out.name << "': " << dtype_name(t.dtype()) << shape_str(t.shape());
      std::cout << " [";
      for (int64_t k = 0; k < std::min<int64_t>(t.size(), 6); ++k) std::cout << (k ? ", " : "") << t.get(k);
      std::cout << (t.size() > 6 ? ", ...]" : "]") << "\n";
    }
  }
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run a model on inputs and write or check its outputs");
  cmd->add_option("model", opt->model, "ONNX model file")->required();
  cmd->add_option("--test-data", opt->test_data,
                  "folder with input_<i>.pb (bound by position) and optionally output_<i>.pb to check against");
  cmd->add_option("--output-dir", opt->output_dir, "write output_<i>.pb here, in graph output order");
  cmd->add_option("--backend", opt->backend, "reference (the plain evaluator)");
  cmd->add_option("--input", opt->inputs, "NAME=FILE.pb|FILE.npy for one input (repeatable)");
  cmd->add_option("--shape", opt->shapes, "NAME=D0,D1,... binds a dynamic input shape (repeatable)");
  cmd->add_flag("--random-inputs", opt->random_inputs, "fill inputs not given otherwise with random data");
  cmd->add_option("--seed", opt->seed, "seed for --random-inputs");
  cmd->callback([opt] { run(*opt); });
}

}  // namespace tetra::cli
