// Every operator in the table, fed scalars, rank-1 tensors and axes at and past the boundary, on both
// backends: each case either fails with a tetra::Error (exit status 2) or gives a result that the
// executor checked against inference and on which the two backends agree. Never a crash.
#include <set>

#include <catch2/catch.hpp>

#include "importer/epilogue_fusion.h"
#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/executor.h"
#include "runtime/model.h"
#include "runtime/op_registry.h"
#include "runtime/reference_evaluator.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

struct EdgeCase {
  std::string domain, op;
  Shape shape;             // of every data input
  DType dtype;             // of every data input
  int inputs;              // how many inputs the node gets
  std::vector<Attr> attrs;
  int64_t index_value;     // the value of int64 inputs (axes, shapes, indices)
  std::string describe() const {
    return (domain.empty() ? "" : domain + ".") + op + " " + dtype_name(dtype) + shape_str(shape) + " x" +
           std::to_string(inputs) + " index " + std::to_string(index_value) + " attrs " + std::to_string(attrs.size());
  }
};

// Inputs that ONNX types as int64 (axes, shapes, indices, sizes) get an int64 initializer.
bool int64_input(const std::string& op, int i) {
  static const std::map<std::string, std::vector<int>> positions = {
      {"Reshape", {1}},        {"Squeeze", {1}},         {"Unsqueeze", {1}}, {"Split", {1}},
      {"Slice", {1, 2, 3, 4}}, {"Gather", {1}},          {"ReduceSum", {1}}, {"ReduceMean", {1}},
      {"Resize", {3}},         {"ConstantOfShape", {0}}, {"Expand", {1}}};
  auto it = positions.find(op);
  return it != positions.end() && std::count(it->second.begin(), it->second.end(), i);
}

// The values to try in int64 inputs: at and past both ends of the axes of `rank`.
std::vector<int64_t> index_values(const std::string& op, int64_t rank) {
  bool any = false;
  for (int i = 0; i < 5; ++i) any = any || int64_input(op, i);
  if (!any) return {0};
  return {0, -1, rank, -rank - 1};
}

std::vector<EdgeCase> edge_cases() {
  std::vector<EdgeCase> cases;
  for (const std::string& name : OpRegistry::get().names()) {
    size_t dot = name.rfind('.');
    std::string domain = dot == std::string::npos ? "" : name.substr(0, dot);
    std::string op = dot == std::string::npos ? name : name.substr(dot + 1);
    if (domain == "tetra") continue;  // made by fusion, never read from a file: covered by the MatMul cases below
    const OpArity* arity = op_arity(domain, op);
    REQUIRE(arity);  // every operator in the table has its schema's arity
    int most = std::min(arity->max_inputs, 3);
    for (const Shape& shape : {Shape{}, Shape{5}})
      for (DType dtype : {DType::Float32, DType::Int8})
        for (int inputs = std::min(1, most); inputs <= most; ++inputs)
          for (int64_t index : index_values(op, int64_t(shape.size()))) {
            int64_t rank = int64_t(shape.size());
            cases.push_back({domain, op, shape, dtype, inputs, {}, index});
            for (int64_t axis : {rank - 1, -rank, rank, -rank - 1})
              cases.push_back({domain, op, shape, dtype, inputs, {{"axis", axis}}, index});
            cases.push_back({domain, op, shape, dtype, inputs, {{"axes", std::vector<int64_t>{index}}}, index});
          }
  }
  return cases;
}

ModelBuilder edge_model(const EdgeCase& c) {
  ModelBuilder b(21);
  if (!c.domain.empty()) b.opset(c.domain, 1);
  std::vector<std::string> inputs;
  for (int i = 0; i < c.inputs; ++i) {
    std::string name = "in" + std::to_string(i);
    if (int64_input(c.op, i)) {
      b.initializer(name, Tensor::from_ints(DType::Int64, {1}, {c.index_value}));
    } else if (i == 0) {
      b.input(name, c.dtype, c.shape);
    } else {
      b.initializer(name, random_tensor(c.dtype, c.shape, -3, 3));
    }
    inputs.push_back(name);
  }
  b.output("y", DType::Float32);  // the type is left to inference (load_untyped)
  b.node(c.op, inputs, {"y"}, c.attrs, c.domain);
  return b;
}

// load_model, except that the graph output's declared type is dropped: each operator computes its own.
Graph load_untyped(const std::string& path) {
  Graph g = load_onnx(path);
  for (ValueInfo& out : g.outputs) out.dtype = DType::Undefined;
  check(unsupported_nodes(g).empty(), ErrorKind::Unsupported, "unsupported");
  infer_shapes(g);
  fuse_epilogues(g);
  infer_shapes(g);
  return g;
}

// Runs one case on both backends. Returns "" when it ends in a tetra::Error or in agreeing results;
// `ran` says which.
std::string run_edge_case(const ModelBuilder& b, const std::string& path, const TensorMap& inputs, bool* ran) {
  Graph g;
  TensorMap expected;
  *ran = false;
  try {
    g = load_untyped(b.save(path));
    expected = run_reference(g, inputs);
  } catch (const Error&) {
    return "";
  }
  *ran = true;
  TensorMap got;
  try {
    ExecutorOptions one_thread;
    one_thread.threads = 1;
    got = Executor(g, one_thread).run(inputs);
  } catch (const Error& e) {
    return std::string("the reference ran but the Halide backend failed: ") + e.what();
  }
  for (const auto& [name, tensor] : expected) {
    std::string diff = compare_tensors(got.at(name), tensor, 1e-5, 1e-4);
    if (!diff.empty()) return "the backends disagree on '" + name + "': " + diff;
  }
  return "";
}

}  // namespace

TEST_CASE("every operator meets scalars, rank-1 tensors and boundary axes with an error or a result", "[bad-input][ops]") {
  std::string dir = temp_dir("op_edges");
  std::vector<EdgeCase> cases = edge_cases();
  std::set<std::string> ops_that_ran;
  int ran = 0;
  for (const EdgeCase& c : cases) {
    INFO(c.describe());
    ModelBuilder b = edge_model(c);
    TensorMap inputs;
    if (c.inputs > 0 && !int64_input(c.op, 0)) inputs["in0"] = random_tensor(c.dtype, c.shape, -3, 3);
    bool result = false;
    CHECK(run_edge_case(b, dir + "/m.onnx", inputs, &result) == "");
    ran += result;
    if (result) ops_that_ran.insert(c.op);
  }
  // Not a test of refusals alone: many cases run, on most operators.
  INFO(cases.size() << " cases, " << ran << " ran, on " << ops_that_ran.size() << " operators");
  CHECK(ran > int(cases.size()) / 10);
  CHECK(ops_that_ran.size() > OpRegistry::get().names().size() / 2);
}

TEST_CASE("int4 MatMuls with scalar and rank-1 activations: an error or the reference's result", "[bad-input][ops]") {
  std::string dir = temp_dir("op_edges_int4");
  for (const Shape& a : {Shape{}, Shape{16}, Shape{1, 16}}) {
    INFO(shape_str(a));
    ModelBuilder b(21);
    b.input("a", DType::Float32, a);
    b.output("y", DType::Float32);
    b.initializer("w", random_tensor(DType::Int4, {16, 4}, -8, 7));
    b.initializer("s", random_tensor(DType::Float32, {1, 4}, 0.01, 0.1));
    b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}, {"block_size", 16}});
    b.node("MatMul", {"a", "wf"}, {"y"});
    bool ran = false;
    CHECK(run_edge_case(b, dir + "/m.onnx", {{"a", random_tensor(DType::Float32, a)}}, &ran) == "");
    if (a.size() == 2) CHECK(ran);  // the ordinary case runs
  }
}
