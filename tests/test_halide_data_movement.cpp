// The Halide backend's data-movement, Where, Resize and reduction kernels
// (runtime/halide_data_movement.cpp) against the reference kernels: one-node models on fresh random
// data with odd shapes, negative axes, broadcasting and float16, run on both backends; views that
// share the input's bytes; and a model made of table operators with no reference fallback.
//
// A pipeline is compiled once per element size (copies, Where, Gather) or mode, whatever the shapes,
// so the many cases here cost few compiles.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

// A model input: a graph input, or a constant initializer; an empty name omits an optional input.
struct In {
  std::string name;
  Tensor value;
  bool constant = false;
};

In input(const std::string& name, const Shape& shape, DType dtype = DType::Float32) {
  bool integer = !is_float(dtype);
  return {name, random_tensor(dtype, shape, integer ? -1000 : -2, integer ? 1000 : 2)};
}
In ints(const std::string& name, const std::vector<int64_t>& values) {
  return {name, Tensor::from_ints(DType::Int64, {int64_t(values.size())}, values), true};
}
In floats(const std::string& name, const std::vector<double>& values) {
  return {name, Tensor::from_doubles(DType::Float32, {int64_t(values.size())}, values), true};
}
In mask(const std::string& name, const Shape& shape) {
  Tensor t = random_tensor(DType::Int32, shape, 0, 1);
  Tensor b(DType::Bool, shape);
  for (int64_t i = 0; i < t.size(); ++i) b.set_int(i, t.get_int(i));
  return {name, b};
}

struct Outcome {
  std::vector<Tensor> halide, reference;
  KernelInfo kernel;  // the node's kernel on the Halide backend
};

// Runs the one-node model `op(inputs)` with `outputs` outputs of type `out_type` on both backends.
Outcome run_node(const std::string& op, const std::vector<In>& inputs, const std::vector<Attr>& attrs = {},
                 int64_t opset = 21, size_t outputs = 1, DType out_type = DType::Undefined) {
  static int count = 0;
  ModelBuilder b(opset);
  std::vector<std::string> names, out_names;
  TensorMap feeds;
  for (const In& in : inputs) {
    names.push_back(in.name);
    if (in.name.empty()) continue;
    if (in.constant) {
      b.initializer(in.name, in.value);
    } else {
      b.input(in.name, in.value.dtype(), in.value.shape());
      feeds[in.name] = in.value;
    }
  }
  for (size_t k = 0; k < outputs; ++k) {
    out_names.push_back("y" + std::to_string(k));
    b.output(out_names.back(), out_type == DType::Undefined ? inputs[0].value.dtype() : out_type);
  }
  b.node(op, names, out_names, attrs);
  static const std::string dir = temp_dir("halide_data_movement");
  Graph graph = load_model(b.save(dir + "/m" + std::to_string(count++) + ".onnx"));
  Executor halide(graph, ExecutorOptions{Backend::Halide, 0});
  Executor reference(graph, ExecutorOptions{Backend::Reference, 0});
  TensorMap got = halide.run(feeds), expected = reference.run(feeds);
  Outcome out;
  for (const std::string& name : out_names) {
    out.halide.push_back(got.at(name));
    out.reference.push_back(expected.at(name));
  }
  out.kernel = halide.kernels()[0];
  return out;
}

// The node ran on Halide and every output matches the reference (type, shape, values).
void check_halide(const Outcome& o, double atol = 0, double rtol = 0) {
  INFO(o.kernel.node << ": " << o.kernel.backend << " (" << o.kernel.detail << ")");
  CHECK(o.kernel.backend == "halide");
  for (size_t k = 0; k < o.halide.size(); ++k) {
    CHECK(o.halide[k].dtype() == o.reference[k].dtype());
    std::string mismatch = compare_tensors(o.halide[k], o.reference[k], atol, rtol);
    INFO("output " << k << ": " << mismatch);
    CHECK(mismatch.empty());
  }
}

}  // namespace

TEST_CASE("Halide Transpose permutes any rank through run-time strides", "[halide][data_movement]") {
  check_halide(run_node("Transpose", {input("x", {3, 5, 7})}, {{"perm", std::vector<int64_t>{2, 0, 1}}}));
  check_halide(run_node("Transpose", {input("x", {3, 5, 7})}, {{"perm", std::vector<int64_t>{1, 0, 2}}}));
  check_halide(run_node("Transpose", {input("x", {3, 5, 7})}));  // default: reversed
  // NCHW -> NHWC, float16 and int64 (moved by size, no conversion).
  for (DType t : {DType::Float32, DType::Float16, DType::Int64})
    check_halide(run_node("Transpose", {input("x", {2, 3, 5, 7}, t)}, {{"perm", std::vector<int64_t>{0, 2, 3, 1}}}));
  // Rows of dim 1 in several tasks, the last one ragged: 2000 rows of 5 values, about 1638 rows a task.
  check_halide(run_node("Transpose", {input("x", {2000, 3, 5})}, {{"perm", std::vector<int64_t>{1, 0, 2}}}));
  // Rank 8: dims that move together merge, leaving 4.
  check_halide(run_node("Transpose", {input("x", {2, 1, 3, 2, 1, 2, 3, 2})},
                        {{"perm", std::vector<int64_t>{4, 5, 6, 7, 0, 1, 2, 3}}}));
}

TEST_CASE("Halide Slice takes steps, negative axes and clamped bounds", "[halide][data_movement]") {
  In x = input("x", {6, 7, 9});
  check_halide(run_node("Slice", {x, ints("s", {-1, 1}), ints("e", {-100, 6}), ints("a", {-1, 0}), ints("p", {-2, 2})}));
  check_halide(run_node("Slice", {x, ints("s", {1}), ints("e", {1000}), ints("a", {1}), {"", Tensor()}}));
  check_halide(run_node("Slice", {x, ints("s", {0, 2, 3}), ints("e", {5, 3, 8})}));  // a single index on axis 1
  check_halide(run_node("Slice", {x, ints("s", {4}), ints("e", {2}), ints("a", {0})}));  // empty
  check_halide(run_node("Slice", {input("x", {5, 11}, DType::Float16), ints("s", {10}), ints("e", {-12}),
                                  ints("a", {1}), ints("p", {-3})}));
  // Opset 9: attributes.
  check_halide(run_node("Slice", {x}, {{"starts", std::vector<int64_t>{1, -3}}, {"ends", std::vector<int64_t>{5, 9}},
                                       {"axes", std::vector<int64_t>{0, 2}}},
                        9));
}

TEST_CASE("Halide Concat copies each input into its window", "[halide][data_movement]") {
  check_halide(run_node("Concat", {input("a", {2, 3, 5}), input("b", {2, 4, 5}), input("c", {2, 1, 5})}, {{"axis", 1}}));
  check_halide(run_node("Concat", {input("a", {2, 3, 5}), input("b", {2, 3, 2})}, {{"axis", -1}}));
  check_halide(run_node("Concat", {input("a", {3, 5}), input("b", {1, 5})}, {{"axis", 0}}));
  // A last axis of 1: the window's innermost stride is not 1.
  check_halide(run_node("Concat", {input("a", {4, 1}), input("b", {4, 1})}, {{"axis", 1}}));
  check_halide(run_node("Concat", {input("a", {4, 0}), input("b", {4, 3})}, {{"axis", 1}}));  // an empty input
  check_halide(run_node("Concat", {input("a", {3, 9}, DType::Int64), input("b", {3, 30}, DType::Int64)}, {{"axis", 1}}));
  check_halide(
      run_node("Concat", {input("a", {2, 3}, DType::Float16), input("b", {2, 5}, DType::Float16)}, {{"axis", -1}}));
}

TEST_CASE("Halide Split copies each output from its window", "[halide][data_movement]") {
  check_halide(run_node("Split", {input("x", {3, 8, 5}), ints("s", {2, 5, 1})}, {{"axis", 1}}, 13, 3));
  check_halide(run_node("Split", {input("x", {3, 7})}, {{"axis", -1}, {"num_outputs", 3}}, 18, 3));  // uneven
  check_halide(run_node("Split", {input("x", {6, 4}, DType::Float16)}, {}, 11, 2));
  check_halide(run_node("Split", {input("x", {4, 9})}, {{"axis", 1}, {"split", std::vector<int64_t>{0, 9}}}, 11, 2));
}

TEST_CASE("Halide Gather picks rows along any axis", "[halide][data_movement]") {
  In table = input("x", {10, 7});
  check_halide(run_node("Gather", {table, ints("i", {3, -1, 0, 9, 3})}));
  check_halide(run_node("Gather", {table, ints("i", {6, -7})}, {{"axis", -1}}));
  check_halide(run_node("Gather", {input("x", {2, 5, 3}), {"i", Tensor::from_ints(DType::Int32, {2, 2}, {4, 0, 1, -2})}},
                        {{"axis", 1}}));
  check_halide(run_node("Gather", {table, {"i", Tensor::from_ints(DType::Int64, {}, {-3}), true}}));  // a scalar index
  check_halide(run_node("Gather", {input("x", {9, 5}, DType::Float16), ints("i", {8, 1})}));
  check_halide(run_node("Gather", {input("x", {20, 30}, DType::Int64), ints("i", {19, 2, 7})}));
  // An index out of range: the reference's message, naming the node.
  CHECK_THROWS_WITH(run_node("Gather", {table, {"i", Tensor::from_ints(DType::Int64, {2}, {1, 10})}}),
                    Catch::Contains("Gather") && Catch::Contains("out of range"));
}

TEST_CASE("Halide Where selects with broadcasting", "[halide][data_movement]") {
  check_halide(run_node("Where", {mask("c", {4, 1, 5}), input("x", {3, 1}), input("y", {})}, {}, 21, 1, DType::Float32));
  check_halide(run_node("Where", {mask("c", {6, 7}), input("x", {6, 7}), input("y", {6, 7})}, {}, 21, 1, DType::Float32));
  check_halide(run_node("Where", {mask("c", {5}), input("x", {3, 5}, DType::Float16), input("y", {3, 1}, DType::Float16)},
                        {}, 21, 1, DType::Float16));
  check_halide(run_node("Where", {mask("c", {4, 30}), input("x", {4, 30}, DType::Int64), input("y", {1}, DType::Int64)},
                        {}, 21, 1, DType::Int64));
}

TEST_CASE("Expand broadcasts both ways, on the reference and on Halide", "[halide][data_movement]") {
  // Known values: x [3, 1] = 1, 2, 3 to [2, 1, 4]: [2, 3, 4], each row its x.
  Outcome known =
      run_node("Expand", {{"x", Tensor::from_doubles(DType::Float32, {3, 1}, {1, 2, 3})}, ints("s", {2, 1, 4})});
  check_halide(known);
  REQUIRE(known.reference[0].shape() == Shape{2, 3, 4});
  for (int64_t k = 0; k < 24; ++k) CHECK(known.reference[0].get(k) == double(k / 4 % 3 + 1));
  // A 1 in the shape keeps x's dim; a shape of lower rank; other element types.
  check_halide(run_node("Expand", {input("x", {2, 1, 5}), ints("s", {3, 1, 4, 1})}));
  check_halide(run_node("Expand", {input("x", {4, 6}), ints("s", {6})}));
  check_halide(run_node("Expand", {input("x", {1, 7}, DType::Float16), ints("s", {5, 1})}));
  check_halide(run_node("Expand", {input("x", {3, 1}, DType::Int64), ints("s", {3, 40})}));
  CHECK_THROWS_WITH(run_node("Expand", {input("x", {3, 2}), ints("s", {4, 4})}), Catch::Contains("Expand"));
}

TEST_CASE("Halide Resize matches every nearest mode and coordinate transform", "[halide][data_movement]") {
  In x = input("x", {2, 3, 5, 7});
  const std::vector<std::string> transforms = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                                               "tf_half_pixel_for_nn"};
  for (const std::string& transform : transforms)
    for (const char* nearest : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"})
      for (const std::vector<double>& scales : {std::vector<double>{1, 1, 2, 3}, {1, 1, 0.6, 0.5}}) {
        INFO(transform << " " << nearest << " scales " << scales[2] << "x" << scales[3]);
        check_halide(run_node("Resize", {x, {"", Tensor()}, floats("s", scales)},
                              {{"mode", "nearest"}, {"coordinate_transformation_mode", transform},
                               {"nearest_mode", nearest}},
                              13));
      }
  for (const std::string& transform : transforms) {
    INFO("linear " << transform);
    check_halide(run_node("Resize", {x, {"", Tensor()}, {"", Tensor()}, ints("z", {2, 3, 11, 4})},
                          {{"mode", "linear"}, {"coordinate_transformation_mode", transform}}, 13),
                 1e-6, 1e-5);
  }
  // Resize-10 (asymmetric, floor), float16, and a pair of axes.
  check_halide(run_node("Resize", {x, floats("s", {1, 1, 2, 2})}, {{"mode", "nearest"}}, 10));
  check_halide(run_node("Resize", {input("x", {1, 2, 4, 6}, DType::Float16), {"", Tensor()}, floats("s", {1, 1, 1.5, 2})},
                        {{"mode", "linear"}}, 13),
               1e-3, 1e-3);
  check_halide(run_node("Resize", {x, {"", Tensor()}, {"", Tensor()}, ints("z", {9, 3})},
                        {{"mode", "linear"}, {"axes", std::vector<int64_t>{-2, -1}}}, 18),
               1e-6, 1e-5);
}

TEST_CASE("Halide Resize nearest by whole factors stores each input vector per factor", "[halide][data_movement]") {
  // Widths below, at and past a vector (and ragged), factors 1 to 4 per axis, every transform whose
  // samples are out / factor; float16. Each must take the whole-factor kernel and match the reference.
  struct Case {
    Shape x;
    double sh, sw;
    std::string transform, nearest;
  };
  const std::vector<Case> cases = {{{1, 3, 5, 7}, 2, 2, "asymmetric", "floor"},
                                   {{2, 2, 4, 17}, 2, 2, "half_pixel", "round_prefer_floor"},
                                   {{1, 4, 3, 40}, 1, 2, "asymmetric", "floor"},
                                   {{1, 1, 6, 9}, 3, 4, "asymmetric", "floor"},
                                   {{1, 2, 5, 33}, 2, 1, "half_pixel", "round_prefer_floor"}};
  for (const Case& c : cases) {
    INFO(shape_str(c.x) << " x" << c.sh << "x" << c.sw << " " << c.transform << " " << c.nearest);
    for (DType t : {DType::Float32, DType::Float16}) {
      Outcome o = run_node(
          "Resize", {input("x", c.x, t), {"", Tensor()}, floats("s", {1, 1, c.sh, c.sw})},
          {{"mode", "nearest"}, {"coordinate_transformation_mode", c.transform}, {"nearest_mode", c.nearest}}, 13);
      check_halide(o);
      CHECK_THAT(o.kernel.detail, Catch::Contains("nearest by whole factors " + std::to_string(int(c.sw)) + "x" +
                                                  std::to_string(int(c.sh))));
    }
  }
  // Samples that are not out / factor (a factor of 1.5 along H) keep the sample tables.
  Outcome tables = run_node("Resize", {input("x", {1, 2, 4, 6}), {"", Tensor()}, floats("s", {1, 1, 1.5, 2})},
                            {{"mode", "nearest"}, {"coordinate_transformation_mode", "asymmetric"}}, 13);
  check_halide(tables);
  CHECK_THAT(tables.kernel.detail, !Catch::Contains("whole factors"));
}

TEST_CASE("Halide ReduceSum and ReduceMean reduce any axes", "[halide][data_movement]") {
  In x = input("x", {3, 4, 5, 6});
  const std::vector<std::vector<int64_t>> axes_lists = {{-1}, {0, 2}, {1}, {0, 1, 2, 3}, {1, 3}, {0, -1}};
  for (const auto& axes : axes_lists)
    for (int keepdims : {0, 1}) {
      INFO("axes " << shape_str(Shape(axes)) << " keepdims " << keepdims);
      check_halide(run_node("ReduceSum", {x, ints("a", axes)}, {{"keepdims", keepdims}}, 13), 1e-5, 1e-5);
      check_halide(run_node("ReduceMean", {x, ints("a", axes)}, {{"keepdims", keepdims}}, 18), 1e-6, 1e-5);
    }
  // Every axis by default; attributes before opset 13 / 18; float16; a no-op.
  check_halide(run_node("ReduceSum", {x}, {}, 13), 1e-4, 1e-5);
  check_halide(run_node("ReduceMean", {x}, {{"axes", std::vector<int64_t>{-2}}}, 13), 1e-6, 1e-5);
  check_halide(run_node("ReduceSum", {x}, {{"axes", std::vector<int64_t>{0, 3}}, {"keepdims", 0}}, 11), 1e-5, 1e-5);
  check_halide(run_node("ReduceMean", {input("x", {5, 33}, DType::Float16), ints("a", {1})}, {}, 18), 1e-3, 1e-3);
  check_halide(run_node("ReduceSum", {x, {"a", Tensor::from_ints(DType::Int64, {0}, {}), true}},
                        {{"noop_with_empty_axes", 1}}, 13));
}

TEST_CASE("Halide views share the input's bytes", "[halide][data_movement]") {
  struct View {
    std::string op;
    std::vector<In> extra;
    std::vector<Attr> attrs;
  };
  const std::vector<View> views = {
      {"Reshape", {ints("s", {6, -1})}, {}},
      {"Flatten", {}, {{"axis", 2}}},
      {"Squeeze", {ints("a", {1})}, {}},
      {"Unsqueeze", {ints("a", {0, -1})}, {}},
      {"Identity", {}, {}},
  };
  for (const View& v : views) {
    INFO(v.op);
    ModelBuilder b(21);
    Tensor x = random_tensor(DType::Float32, {4, 1, 3, 5});
    b.input("x", DType::Float32, x.shape()).output("y", DType::Float32);
    std::vector<std::string> names{"x"};
    for (const In& in : v.extra) {
      b.initializer(in.name, in.value);
      names.push_back(in.name);
    }
    b.node(v.op, names, {"y"}, v.attrs);
    Graph graph = load_model(b.save(temp_dir("halide_views") + "/" + v.op + ".onnx"));
    Executor halide(graph, ExecutorOptions{Backend::Halide, 0});
    Tensor y = halide.run({{"x", x}}).at("y");
    INFO(halide.kernels()[0].detail);
    CHECK(halide.kernels()[0].backend == "halide");
    CHECK(y.bytes() == x.bytes());  // no copy
    CHECK(compare_tensors(y.reshaped(x.shape()), x, 0, 0).empty());
  }
}

TEST_CASE("Halide backend leaves tiny integer shape arithmetic to the reference", "[halide][data_movement]") {
  Outcome o = run_node("Concat", {input("a", {2}, DType::Int64), input("b", {3}, DType::Int64)}, {{"axis", 0}});
  CHECK(o.kernel.backend == "reference");
  CHECK_THAT(o.kernel.detail, Catch::Contains("shape arithmetic"));
  CHECK(compare_tensors(o.halide[0], o.reference[0], 0, 0).empty());
}

TEST_CASE("A model made of table operators runs with no reference fallback", "[halide][data_movement]") {
  // An FPN-style block: out of NHWC, upsample, concat, slice, split, gather, mask, pool, reduce and
  // normalise, with views between.
  ModelBuilder b(18);
  b.input("x", DType::Float32, {1, 7, 6, 4}).input("mask", DType::Bool, {1, 3, 10, 12});
  b.output("y", DType::Float32).output("z", DType::Float32);
  b.initializer("bias", random_tensor(DType::Float32, {4, 1, 1}));
  b.initializer("scales", Tensor::from_doubles(DType::Float32, {4}, {1, 1, 2, 2}));
  b.initializer("idx", Tensor::from_ints(DType::Int64, {3}, {0, 3, -1}));
  b.initializer("starts", Tensor::from_ints(DType::Int64, {2}, {1, -1}));
  b.initializer("ends", Tensor::from_ints(DType::Int64, {2}, {11, -100}));
  b.initializer("axes", Tensor::from_ints(DType::Int64, {2}, {2, 3}));
  b.initializer("steps", Tensor::from_ints(DType::Int64, {2}, {1, -1}));
  b.initializer("split", Tensor::from_ints(DType::Int64, {2}, {3, 5}));
  b.initializer("last", Tensor::from_ints(DType::Int64, {1}, {-1}));
  b.initializer("shape", Tensor::from_ints(DType::Int64, {3}, {1, 6, -1}));
  b.initializer("first", Tensor::from_ints(DType::Int64, {1}, {0}));
  b.node("Transpose", {"x"}, {"nchw"}, {{"perm", std::vector<int64_t>{0, 3, 1, 2}}});  // [1, 4, 7, 6]
  b.node("Add", {"nchw", "bias"}, {"biased"});
  b.node("Relu", {"biased"}, {"relu"});
  b.node("Resize", {"relu", "", "scales"}, {"up"}, {{"mode", "nearest"}});  // [1, 4, 14, 12]
  b.node("Resize", {"relu", "", "scales"}, {"up_linear"}, {{"mode", "linear"}});
  b.node("Concat", {"up", "up_linear"}, {"cat"}, {{"axis", 1}});            // [1, 8, 14, 12]
  b.node("Slice", {"cat", "starts", "ends", "axes", "steps"}, {"cut"});      // [1, 8, 10, 12]
  b.node("Split", {"cut", "split"}, {"lo", "hi"}, {{"axis", 1}});            // [1, 3, 10, 12], [1, 5, 10, 12]
  b.node("Gather", {"hi", "idx"}, {"picked"}, {{"axis", 1}});                // [1, 3, 10, 12]
  b.node("Where", {"mask", "lo", "picked"}, {"mixed"});
  b.node("MaxPool", {"mixed"}, {"pooled"},
         {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}});  // [1, 3, 5, 6]
  b.node("Concat", {"pooled", "pooled"}, {"pooled2"}, {{"axis", 1}});       // [1, 6, 5, 6]
  b.node("Reshape", {"pooled2", "shape"}, {"rows"});                        // [1, 6, 30]
  b.node("ReduceMean", {"rows", "last"}, {"mean"});                         // [1, 6, 1]
  b.node("Sub", {"rows", "mean"}, {"centered"});
  b.node("Softmax", {"centered"}, {"soft"});
  b.node("Flatten", {"soft"}, {"flat"}, {{"axis", 1}});                     // [1, 180]
  b.node("Unsqueeze", {"flat", "first"}, {"flat3"});                        // [1, 1, 180]
  b.node("Squeeze", {"flat3", "first"}, {"y"});                             // [1, 180]
  b.node("ReduceSum", {"cut", "axes"}, {"sums"}, {{"keepdims", 0}});        // [1, 8]
  b.node("Identity", {"sums"}, {"z"});
  Graph graph = load_model(b.save(temp_dir("halide_table_model") + "/m.onnx"));

  TensorMap inputs{{"x", random_tensor(DType::Float32, {1, 7, 6, 4})}, {"mask", mask("mask", {1, 3, 10, 12}).value}};
  Executor halide(graph, ExecutorOptions{Backend::Halide, 0});
  TensorMap got = halide.run(inputs);
  TensorMap expected = Executor(graph, ExecutorOptions{Backend::Reference, 0}).run(inputs);
  for (const char* name : {"y", "z"}) {
    std::string mismatch = compare_tensors(got.at(name), expected.at(name), 1e-5, 1e-5);
    INFO(name << ": " << mismatch);
    CHECK(mismatch.empty());
  }
  for (const KernelInfo& k : halide.kernels()) {
    INFO(k.node << ": " << k.detail);
    CHECK(k.backend == "halide");
  }
}
