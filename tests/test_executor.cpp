// The executor binds the value types once per set of input shapes: runs with changing and repeating
// shapes give the reference's results, and a bad input is still refused on the cached path.
#include <catch2/catch.hpp>

#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

TEST_CASE("the executor re-infers shapes only when the input shapes change", "[executor]") {
  std::string dir = temp_dir("executor_shapes");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {-1, 8});
  b.output("y", DType::Float32);
  b.output("x_out", DType::Float32);
  b.initializer("w", random_tensor(DType::Float32, {8, 5}));
  b.node("MatMul", {"x", "w"}, {"m"});
  b.node("Relu", {"m"}, {"y"});
  b.node("Identity", {"x"}, {"x_out"});
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  for (Backend backend : {Backend::Reference, Backend::Halide}) {
    Executor executor(graph, ExecutorOptions{backend, 0, nullptr, ""});
    for (int64_t rows : {3, 3, 7, 3, 1}) {
      INFO(backend_name(backend) << " rows " << rows);
      TensorMap in = {{"x", random_tensor(DType::Float32, {rows, 8})}};
      TensorMap got = executor.run(in);
      TensorMap want = run_reference(graph, in);
      CHECK(got.at("y").shape() == Shape{rows, 5});
      CHECK(compare_tensors(got.at("y"), want.at("y"), 1e-5, 1e-5) == "");
      CHECK(compare_tensors(got.at("x_out"), in.at("x"), 0, 0) == "");
    }
    // Same shape, wrong type: refused by name, not run.
    TensorMap bad = {{"x", random_tensor(DType::Float16, {1, 8})}};
    CHECK_THROWS_WITH(executor.run(bad), Catch::Contains("input 'x' must be float32"));
  }
}
