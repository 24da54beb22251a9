#include "tests/ort_oracle.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "dsl/target.h"
#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/reference_evaluator.h"
#include "runtime/tensor_io.h"
#include "tests/test_support.h"

namespace tetra::test {

namespace fs = std::filesystem;

static std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool ort_available() {
  static const bool available =
      fs::exists(fs::path(source_dir()) / "node_modules" / "onnxruntime-node" / "package.json") &&
      run_command("node --version") == 0;
  return available;
}

bool require_ort() {
  if (ort_available()) return true;
  const std::string why =
      "ONNX Runtime oracle unavailable: needs node and 'npm install --ignore-scripts onnxruntime-node@1.30.0' in " +
      source_dir();
  if (std::getenv("CI")) FAIL(why + " (CI is set, so this is an error)");
  WARN(why + "; skipping");
  return false;
}

std::vector<Tensor> run_ort(const std::string& model_path, const std::vector<Tensor>& inputs, bool optimize) {
  const std::string dir = temp_dir("ort");
  const std::string in_dir = dir + "/in", out_dir = dir + "/out";
  fs::create_directories(in_dir);
  fs::create_directories(out_dir);
  for (size_t i = 0; i < inputs.size(); ++i) {
    write_tensor_pb(in_dir + "/input_" + std::to_string(i) + ".pb", inputs[i], "input_" + std::to_string(i));
  }
  std::string command = "node " + quoted(source_dir() + "/scripts/ort_run.js") + " " + quoted(model_path) + " " +
                        quoted(in_dir) + " " + quoted(out_dir) + (optimize ? " --optimize" : "");
  std::string output;
  if (run_command(command, &output) != 0) throw std::runtime_error("ONNX Runtime failed on " + model_path + ":\n" + output);
  std::vector<Tensor> outputs;
  for (int i = 0;; ++i) {
    std::string path = out_dir + "/output_" + std::to_string(i) + ".pb";
    if (!fs::exists(path)) break;
    outputs.push_back(read_tensor_pb(path).tensor);
  }
  fs::remove_all(dir);
  return outputs;
}

std::vector<Tensor> run_tetra(const std::string& model_path, const std::vector<Tensor>& inputs,
                              size_t* quantized_nodes, Backend backend) {
  TensorMap feeds;
  Graph graph = load_with_inputs(model_path, inputs, &feeds);
  if (quantized_nodes) *quantized_nodes = graph.quantized_nodes().size();
  TensorMap results = Executor(graph, ExecutorOptions{backend}).run(feeds);
  std::vector<Tensor> outputs;
  for (const ValueInfo& out : graph.outputs) outputs.push_back(results.at(out.name));
  return outputs;
}

Graph load_with_inputs(const std::string& model_path, const std::vector<Tensor>& inputs, TensorMap* feeds) {
  Graph graph = load_onnx(model_path);
  check(graph.inputs.size() == inputs.size(), ErrorKind::Invalid,
        model_path + " takes " + std::to_string(graph.inputs.size()) + " inputs, got " + std::to_string(inputs.size()));
  std::map<std::string, Shape> shapes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    shapes[graph.inputs[i].name] = inputs[i].shape();
    (*feeds)[graph.inputs[i].name] = inputs[i];
  }
  infer_shapes(graph, shapes);
  return graph;
}

TensorMap run_on_opencl(const Graph& graph, const TensorMap& feeds, GpuModelJob* job) {
  const std::string dir = temp_dir("opencl_job");
  dsl::Result<GpuModelJob> built = write_gpu_model_job(graph, feeds, dsl::parse_target("opencl").value(), nullptr, dir);
  INFO((built.ok() ? "" : built.failure().describe()));
  REQUIRE(built.ok());
  std::string out;
  const int status = run_command(tetra_device_program() + " run " + built.value().job_file, &out);
  INFO(out);
  REQUIRE(status == 0);
  dsl::Result<TensorMap> outputs = read_gpu_model_outputs(graph, dir);
  INFO((outputs.ok() ? "" : outputs.failure().describe()));
  REQUIRE(outputs.ok());
  if (job) *job = built.value();
  return outputs.value();
}

}  // namespace tetra::test
