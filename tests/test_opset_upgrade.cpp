// The opset upgrade of tetra quantize: for each adapter, ONNX Runtime gives the same outputs on the
// model in its old form and in the opset 21 form tetra writes.
#include <catch2/catch.hpp>

#include <fstream>
#include <functional>

#include "importer/error.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"
#include "tools/quantize/opset_upgrade.h"
#include "tools/quantize/proto_util.h"

using namespace tetra;
using namespace tetra::test;

namespace {

struct Case {
  std::string name;
  int64_t opset;
  Shape input;
  std::function<void(ModelBuilder&)> build;  // reads "x", writes "y"
  std::string new_op;                        // an op the upgraded model must hold
};

bool has_attr(const onnx::ModelProto& m, const std::string& op, const std::string& attr) {
  for (const auto& n : m.graph().node())
    if (n.op_type() == op && quantize::find_attr(n, attr)) return true;
  return false;
}
bool has_op(const onnx::ModelProto& m, const std::string& op) {
  for (const auto& n : m.graph().node())
    if (n.op_type() == op) return true;
  return false;
}

std::vector<int64_t> ints(std::initializer_list<int64_t> v) { return v; }

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"Clip 9 min/max attributes", 9, {2, 8},
       [](ModelBuilder& b) { b.node("Clip", {"x"}, {"y"}, {{"min", -0.25f}, {"max", 0.5f}}); }, "Clip"},
      {"Softmax 11 flattening from axis 1 of a 3-D input", 11, {2, 3, 4},
       [](ModelBuilder& b) { b.node("Softmax", {"x"}, {"y"}, {{"axis", 1}}); }, "Flatten"},
      {"LogSoftmax 11 default axis on a 4-D input", 11, {2, 3, 2, 2},
       [](ModelBuilder& b) { b.node("LogSoftmax", {"x"}, {"y"}); }, "Flatten"},
      {"Hardmax 11 over the last axis", 11, {2, 3, 5},
       [](ModelBuilder& b) { b.node("Hardmax", {"x"}, {"y"}, {{"axis", 2}}); }, "Hardmax"},
      {"Unsqueeze/Squeeze 11 axes attributes", 11, {3, 4},
       [](ModelBuilder& b) {
         b.node("Unsqueeze", {"x"}, {"u"}, {{"axes", ints({0, 3})}});
         b.node("Relu", {"u"}, {"r"});
         b.node("Squeeze", {"r"}, {"y"}, {{"axes", ints({0})}});
       }, "Squeeze"},
      {"ReduceSum 11 axes attribute", 11, {2, 3, 4},
       [](ModelBuilder& b) { b.node("ReduceSum", {"x"}, {"y"}, {{"axes", ints({1})}, {"keepdims", 0}}); }, "ReduceSum"},
      {"ReduceMean/ReduceMax 11 axes attribute", 11, {2, 3, 4},
       [](ModelBuilder& b) {
         b.node("ReduceMean", {"x"}, {"m"}, {{"axes", ints({-1})}});
         b.node("ReduceMax", {"x"}, {"n"}, {{"axes", ints({-1})}});
         b.node("Add", {"m", "n"}, {"y"});
       }, "ReduceMean"},
      {"Split 11 split attribute", 11, {2, 6},
       [](ModelBuilder& b) {
         b.node("Split", {"x"}, {"a", "c"}, {{"axis", 1}, {"split", ints({2, 4})}});
         b.node("ReduceSum", {"c"}, {"s"}, {{"axes", ints({1})}});
         b.node("Add", {"a", "s"}, {"y"});
       }, "Split"},
      {"Split 11 even split", 11, {2, 6},
       [](ModelBuilder& b) {
         b.node("Split", {"x"}, {"a", "c"}, {{"axis", 1}});
         b.node("Sub", {"a", "c"}, {"y"});
       }, "Split"},
      {"Pad 10 pads/value attributes", 10, {1, 2, 3, 3},
       [](ModelBuilder& b) {
         b.node("Pad", {"x"}, {"y"}, {{"pads", ints({0, 0, 1, 2, 0, 0, 2, 1})}, {"value", 0.5f}});
       }, "Pad"},
      {"Slice 9 starts/ends/axes attributes", 9, {4, 6},
       [](ModelBuilder& b) {
         b.node("Slice", {"x"}, {"y"}, {{"starts", ints({1, 0})}, {"ends", ints({3, 5})}, {"axes", ints({0, 1})}});
       }, "Slice"},
      {"Upsample 9 nearest", 9, {1, 2, 3, 3},
       [](ModelBuilder& b) {
         b.initializer("scales", Tensor::from_doubles(DType::Float32, {4}, {1, 1, 2, 2}));
         b.node("Upsample", {"x", "scales"}, {"y"}, {{"mode", "nearest"}});
       }, "Resize"},
      {"Upsample 7 linear", 7, {1, 2, 3, 3},
       [](ModelBuilder& b) {
         b.node("Upsample", {"x"}, {"y"}, {{"mode", "linear"}, {"scales", std::vector<float>{1, 1, 2, 2}}});
       }, "Resize"},
      {"Resize 10 nearest enlarging", 10, {1, 2, 3, 3},
       [](ModelBuilder& b) {
         b.initializer("scales", Tensor::from_doubles(DType::Float32, {4}, {1, 1, 2, 3}));
         b.node("Resize", {"x", "scales"}, {"y"}, {{"mode", "nearest"}});
       }, "Resize"},
      {"Resize 10 nearest shrinking", 10, {1, 2, 6, 6},
       [](ModelBuilder& b) {
         b.initializer("scales", Tensor::from_doubles(DType::Float32, {4}, {1, 1, 0.5, 0.5}));
         b.node("Resize", {"x", "scales"}, {"y"}, {{"mode", "nearest"}});
       }, "Resize"},
      {"Resize 10 linear", 10, {1, 2, 3, 3},
       [](ModelBuilder& b) {
         b.initializer("scales", Tensor::from_doubles(DType::Float32, {4}, {1, 1, 2, 2}));
         b.node("Resize", {"x", "scales"}, {"y"}, {{"mode", "linear"}});
       }, "Resize"},
      {"BatchNormalization 7 spatial attribute", 7, {2, 3, 4, 4},
       [](ModelBuilder& b) {
         b.initializer("s", random_tensor(DType::Float32, {3}, 0.5, 1.5));
         b.initializer("bias", random_tensor(DType::Float32, {3}, -0.5, 0.5));
         b.initializer("mean", random_tensor(DType::Float32, {3}, -0.5, 0.5));
         b.initializer("var", random_tensor(DType::Float32, {3}, 0.5, 1.5));
         b.node("BatchNormalization", {"x", "s", "bias", "mean", "var"}, {"y"}, {{"spatial", 1}, {"epsilon", 1e-3f}});
       }, "BatchNormalization"},
      {"Dropout 10 ratio attribute and unused mask", 10, {2, 5},
       [](ModelBuilder& b) {
         b.node("Dropout", {"x"}, {"d", "mask"}, {{"ratio", 0.3f}});
         b.node("Relu", {"d"}, {"y"});
       }, "Dropout"},
  };
  return all;
}

}  // namespace

TEST_CASE("opset upgrade: ORT agrees on every adapter's old and new form", "[quantize][upgrade]") {
  const bool ort = require_ort();
  const std::string dir = temp_dir("upgrade");
  int index = 0;
  for (const Case& c : cases()) {
    INFO(c.name);
    ModelBuilder b(c.opset, "old");
    b.input("x", DType::Float32, c.input).output("y", DType::Float32);
    c.build(b);
    const std::string old_path = b.save(dir + "/old" + std::to_string(index) + ".onnx");
    onnx::ModelProto upgraded = b.proto();
    std::vector<std::string> notes = quantize::upgrade_opset(upgraded, 21);
    REQUIRE_FALSE(notes.empty());
    CHECK(quantize::default_opset(upgraded) == 21);
    CHECK(has_op(upgraded, c.new_op));
    for (const char* moved : {"min", "max", "axes", "split", "pads", "ratio", "starts", "spatial", "scales"})
      CHECK_FALSE(has_attr(upgraded, c.new_op, moved));
    CHECK_FALSE(has_op(upgraded, "Upsample"));
    const std::string new_path = dir + "/new" + std::to_string(index++) + ".onnx";
    {
      std::ofstream out(new_path, std::ios::binary);
      upgraded.SerializeToOstream(&out);
    }
    if (!ort) continue;
    Tensor x = random_tensor(DType::Float32, c.input, -2, 2);
    Tensor before = run_ort(old_path, {x}).at(0), after = run_ort(new_path, {x}).at(0);
    REQUIRE(before.shape() == after.shape());
    CHECK(compare_tensors(after, before, 1e-6, 1e-5) == "");
  }
}

TEST_CASE("opset upgrade refuses an operator it cannot convert, naming node and opset", "[quantize][upgrade]") {
  ModelBuilder b(9, "topk");
  b.input("x", DType::Float32, {2, 6}).output("y", DType::Float32).output("i", DType::Int64);
  b.node("TopK", {"x"}, {"y", "i"}, {{"k", 2}}).set_name("top2");
  onnx::ModelProto model = b.proto();
  const std::string before = model.SerializeAsString();
  try {
    quantize::upgrade_opset(model, 21);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("TopK 'top2'") && Catch::Contains("opset 9"));
  }
  CHECK(model.SerializeAsString() == before);
}
