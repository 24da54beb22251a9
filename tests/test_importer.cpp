// The importer: tensor decoding (int4 packing, encodings, external data), error paths, and the
// int4 pattern fusions, each checked by running the fused and unfused graphs on the reference.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "tools/model_builder.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace tetra;
using namespace tetra::test;

namespace {

// Loads `path` fused and unfused, runs both on the same random inputs, and returns the fused graph.
Graph expect_fusion_preserves_results(const std::string& path, const TensorMap& inputs, size_t fused_nodes) {
  Graph fused = load_model(path);
  Graph plain = load_model(path, {}, LoadOptions{false});
  REQUIRE(fused.quantized_nodes().size() == fused_nodes);
  REQUIRE(plain.quantized_nodes().empty());
  TensorMap a = run_reference(fused, inputs);
  TensorMap b = run_reference(plain, inputs);
  for (const auto& [name, t] : b) {
    INFO("output " << name);
    CHECK(compare_tensors(a.at(name), t, 1e-6, 1e-6) == "");
  }
  return fused;
}

Tensor random_codes(DType dtype, const Shape& shape) {
  return random_tensor(dtype, shape, dtype == DType::Int4 ? -8 : 0, dtype == DType::Int4 ? 7 : 15);
}

std::string throws_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("int4 tensors pack two values a byte, low nibble first", "[importer]") {
  for (DType dtype : {DType::Int4, DType::UInt4}) {
    for (int64_t n : {1, 2, 5, 8}) {
      Tensor t(dtype, {n});
      std::vector<int64_t> values;
      for (int64_t i = 0; i < n; ++i) values.push_back(dtype == DType::Int4 ? (i * 5) % 16 - 8 : (i * 7) % 16);
      for (int64_t i = 0; i < n; ++i) t.set_int(i, values[i]);
      CHECK(t.byte_size() == (n + 1) / 2);
      for (int64_t i = 0; i < n; ++i) CHECK(t.get_int(i) == values[i]);
      // Round trip through a TensorProto with raw_data.
      onnx::TensorProto proto;
      tensor_to_proto(t, "t", &proto);
      Tensor back = tensor_from_proto(proto);
      CHECK(back.to_ints() == values);
    }
  }
  Tensor t(DType::Int4, {3});
  t.set_int(0, -1);
  t.set_int(1, 7);
  t.set_int(2, -8);
  CHECK(t.bytes()[0] == 0x7F);  // -1 low, 7 high
  CHECK((t.bytes()[1] & 0x0F) == 0x08);
}

TEST_CASE("released storage is reused: zero-filled for Tensor(), as left for for_overwrite", "[importer]") {
  const Shape shape = {1, 4096, 64};  // 1 MiB: large enough to be kept for reuse
  const uint8_t* first;
  {
    Tensor t = Tensor::for_overwrite(DType::Float32, shape);
    std::fill(t.mutable_data<float>(), t.mutable_data<float>() + t.size(), 3.0f);
    first = t.bytes();
  }
  {
    Tensor again = Tensor::for_overwrite(DType::Float32, shape);
    CHECK(again.bytes() == first);  // the same buffer, not a new one each run
    CHECK(again.data<float>()[again.size() - 1] == 3.0f);
  }
  Tensor zeroed(DType::Float32, shape);
  CHECK(zeroed.bytes() == first);
  CHECK(std::all_of(zeroed.data<float>(), zeroed.data<float>() + zeroed.size(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("int4 in int32_data: one packed byte per entry, sign-extended or not", "[importer]") {
  // Elements [7, -4, 1] as int4: bytes 0xC7, 0x01. Writers may store 0xC7 as 199 or as -57.
  for (int32_t first : {199, -57}) {
    onnx::TensorProto proto;
    proto.set_name("w");
    proto.set_data_type(22);
    proto.add_dims(3);
    proto.add_int32_data(first);
    proto.add_int32_data(0x01);
    Tensor t = tensor_from_proto(proto);
    CHECK(t.to_ints() == std::vector<int64_t>{7, -4, 1});
  }
  onnx::TensorProto bad;
  bad.set_name("w");
  bad.set_data_type(21);
  bad.add_dims(5);
  bad.add_int32_data(1);  // 5 uint4 values need 3 bytes
  CHECK_THAT(throws_message([&] { tensor_from_proto(bad); }), Catch::Contains("'w'") && Catch::Contains("needs 3"));
}

TEST_CASE("tensor decoding rejects wrong sizes before allocating", "[importer][errors]") {
  onnx::TensorProto proto;
  proto.set_name("huge");
  proto.set_data_type(1);
  proto.add_dims(int64_t(1) << 40);
  proto.add_dims(1 << 20);
  proto.set_raw_data("abcd");
  CHECK_THAT(throws_message([&] { tensor_from_proto(proto); }), Catch::Contains("'huge'"));
  onnx::TensorProto wrong;
  wrong.set_name("w4");
  wrong.set_data_type(22);
  wrong.add_dims(4);
  wrong.set_raw_data(std::string(3, '\0'));  // 4 int4 values are 2 bytes
  CHECK_THAT(throws_message([&] { tensor_from_proto(wrong); }), Catch::Contains("'w4'") && Catch::Contains("needs 2"));
}

TEST_CASE("external data is read inside the model folder only", "[importer][errors]") {
  std::string dir = temp_dir("external");
  Tensor w = random_tensor(DType::Float32, {4, 3});
  {
    std::ofstream f(dir + "/weights.bin", std::ios::binary);
    f << "PAD!";
    f.write(reinterpret_cast<const char*>(w.bytes()), w.byte_size());
  }
  auto make = [&](const std::string& location, int64_t offset, int64_t length) {
    ModelBuilder b(17);
    b.input("x", DType::Float32, {2, 4});
    b.output("y", DType::Float32);
    b.node("MatMul", {"x", "w"}, {"y"});
    onnx::TensorProto* init = b.proto().mutable_graph()->add_initializer();
    init->set_name("w");
    init->set_data_type(1);
    init->add_dims(4);
    init->add_dims(3);
    init->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add = [&](const std::string& k, const std::string& v) {
      auto* e = init->add_external_data();
      e->set_key(k);
      e->set_value(v);
    };
    add("location", location);
    add("offset", std::to_string(offset));
    add("length", std::to_string(length));
    return b.save(dir + "/model.onnx");
  };
  Graph g = load_model(make("weights.bin", 4, 48));
  REQUIRE(g.nodes.size() == 1);  // the MatMul, with its constant weight fused
  REQUIRE(g.nodes[0].weight);
  CHECK(compare_tensors(g.nodes[0].weight->data, w, 0, 0) == "");
  CHECK_THAT(throws_message([&] { load_model(make("../outside.bin", 0, 48)); }), Catch::Contains("escapes"));
  CHECK_THAT(throws_message([&] { load_model(make("/etc/passwd", 0, 48)); }), Catch::Contains("relative"));
  CHECK_THAT(throws_message([&] { load_model(make("weights.bin", 20, 48)); }), Catch::Contains("outside"));
  CHECK_THAT(throws_message([&] { load_model(make("weights.bin", 0, 40)); }), Catch::Contains("does not match"));
  CHECK_THAT(throws_message([&] { load_model(make("missing.bin", 0, 48)); }), Catch::Contains("missing"));
}

TEST_CASE("malformed and unsupported models fail with one clear error", "[importer][errors]") {
  std::string dir = temp_dir("malformed");
  ModelBuilder b(17);
  b.input("x", DType::Float32, {2, 3});
  b.output("y", DType::Float32);
  b.node("Relu", {"x"}, {"r"}, {}, "").set_name("relu1");
  b.node("NonMaxSuppression", {"r"}, {"s"}).set_name("nms");
  b.node("Unique", {"s"}, {"y"}).set_name("uniq");
  std::string path = b.save(dir + "/unsupported.onnx");
  std::string msg = throws_message([&] { load_model(path); });
  CHECK_THAT(msg, Catch::Contains("2 unsupported") && Catch::Contains("'nms'") && Catch::Contains("'uniq'"));

  // Truncated protobuf.
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  {
    std::ofstream f(dir + "/truncated.onnx", std::ios::binary);
    f.write(bytes.data(), bytes.size() / 2);
  }
  CHECK_THAT(throws_message([&] { load_model(dir + "/truncated.onnx"); }), Catch::Contains("not a valid ONNX model"));
  CHECK_THAT(throws_message([&] { load_model(dir + "/nothing.onnx"); }), Catch::Contains("does not exist"));

  // An input nobody produces, and a shape mismatch found by inference.
  ModelBuilder m(17);
  m.input("x", DType::Float32, {2, 3});
  m.output("y", DType::Float32);
  m.node("Add", {"x", "ghost"}, {"y"}).set_name("add1");
  CHECK_THAT(throws_message([&] { load_model(m.save(dir + "/ghost.onnx")); }),
             Catch::Contains("'add1'") && Catch::Contains("ghost"));
  ModelBuilder s(17);
  s.input("x", DType::Float32, {2, 3});
  s.input("z", DType::Float32, {4, 5});
  s.output("y", DType::Float32);
  s.node("Add", {"x", "z"}, {"y"}).set_name("bad_add");
  CHECK_THAT(throws_message([&] { load_model(s.save(dir + "/shapes.onnx")); }), Catch::Contains("'bad_add'"));

  // Opset out of range.
  ModelBuilder o(5);
  o.input("x", DType::Float32, {2});
  o.output("y", DType::Float32);
  o.node("Relu", {"x"}, {"y"});
  CHECK_THAT(throws_message([&] { load_model(o.save(dir + "/old.onnx")); }), Catch::Contains("opset 5"));
}

TEST_CASE("a missing or mistyped input is reported by name", "[importer][errors]") {
  std::string dir = temp_dir("inputs");
  ModelBuilder b(17);
  b.input("x", DType::Float32, {-1, 3});
  b.output("y", DType::Float32);
  b.node("Relu", {"x"}, {"y"});
  Graph g = load_model(b.save(dir + "/m.onnx"));
  CHECK_THAT(throws_message([&] { run_reference(g, {}); }), Catch::Contains("'x'"));
  CHECK_THAT(throws_message([&] { run_reference(g, {{"x", random_tensor(DType::Float32, {2, 4})}}); }),
             Catch::Contains("'x'"));
  CHECK_THAT(throws_message([&] { run_reference(g, {{"x", random_tensor(DType::Int32, {2, 3})}}); }),
             Catch::Contains("float32"));
  // A dynamic dim binds at run time.
  TensorMap out = run_reference(g, {{"x", random_tensor(DType::Float32, {5, 3})}});
  CHECK(out.at("y").shape() == Shape{5, 3});
}

TEST_CASE("DequantizeLinear int4 weights fuse into MatMul, Gemm and Conv", "[importer][int4]") {
  std::string dir = temp_dir("fuse_dq");
  for (DType dtype : {DType::Int4, DType::UInt4}) {
    for (int granularity = 0; granularity < 3; ++granularity) {  // per-tensor, per-axis, blocked
      for (bool zero_point : {false, true}) {
        int64_t K = 37, N = 6, block = 16;
        ModelBuilder b(21);
        b.input("a", DType::Float32, {3, K});
        b.output("y", DType::Float32);
        b.output("z", DType::Float32);
        b.initializer("w", random_codes(dtype, {K, N}));
        Shape scale_shape = granularity == 0 ? Shape{} : granularity == 1 ? Shape{N} : Shape{(K + block - 1) / block, N};
        b.initializer("s", random_tensor(DType::Float32, scale_shape, 0.01, 0.2));
        std::vector<std::string> dq_in = {"w", "s"};
        if (zero_point) {
          b.initializer("zp", random_codes(dtype, scale_shape));
          dq_in.push_back("zp");
        }
        std::vector<Attr> attrs;
        if (granularity == 1) attrs.push_back({"axis", 1});
        if (granularity == 2) attrs = {{"axis", 0}, {"block_size", block}};
        b.node("DequantizeLinear", dq_in, {"wf"}, attrs);
        b.node("MatMul", {"a", "wf"}, {"y"});
        // The same weight through a Transpose into a Gemm with transB.
        b.initializer("bias", random_tensor(DType::Float32, {N}));
        b.node("Transpose", {"wf"}, {"wt"}, {{"perm", std::vector<int64_t>{1, 0}}});
        b.node("Gemm", {"a", "wt", "bias"}, {"z"}, {{"transB", 1}, {"alpha", 0.5f}});
        std::string path = b.save(dir + "/m.onnx");
        Graph g = expect_fusion_preserves_results(path, {{"a", random_tensor(DType::Float32, {3, K})}}, 2);
        for (const Node* n : g.quantized_nodes()) CHECK(n->op_type == "QMatMul");
        CHECK(g.nodes.size() == 2);  // DQ and Transpose are gone
      }
    }
  }
  // Conv with per-output-channel int4 weights and a Reshape from 2-D storage.
  ModelBuilder c(21);
  c.input("x", DType::Float32, {1, 4, 7, 7});
  c.output("y", DType::Float32);
  c.initializer("w", random_codes(DType::Int4, {8, 36}));
  c.initializer("s", random_tensor(DType::Float32, {8}, 0.01, 0.1));
  c.initializer("shape", Tensor::from_ints(DType::Int64, {4}, {8, 4, 3, 3}));
  c.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}});
  c.node("Reshape", {"wf", "shape"}, {"w4"});
  c.node("Conv", {"x", "w4"}, {"y"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  Graph g = expect_fusion_preserves_results(c.save(dir + "/conv.onnx"),
                                            {{"x", random_tensor(DType::Float32, {1, 4, 7, 7})}}, 1);
  CHECK(g.quantized_nodes()[0]->op_type == "QConv");
  CHECK(g.quantized_nodes()[0]->weight->shape() == Shape{8, 4, 3, 3});
}

TEST_CASE("a weight that also feeds other ops stays unfused where it must", "[importer][int4]") {
  std::string dir = temp_dir("fuse_shared");
  ModelBuilder b(21);
  b.input("a", DType::Float32, {2, 8});
  b.output("y", DType::Float32);
  b.output("wf", DType::Float32);  // the dequantized weight is itself an output
  b.initializer("w", random_codes(DType::Int4, {8, 4}));
  b.initializer("s", random_tensor(DType::Float32, {}, 0.05, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"});
  b.node("MatMul", {"a", "wf"}, {"y"});
  expect_fusion_preserves_results(b.save(dir + "/m.onnx"), {{"a", random_tensor(DType::Float32, {2, 8})}}, 0);
}

TEST_CASE("MatMulNBits fuses into a packed QMatMul", "[importer][int4]") {
  std::string dir = temp_dir("fuse_nbits");
  for (bool zero_points : {false, true}) {
    int64_t K = 40, N = 5, block = 16, blocks = 3;
    ModelBuilder b(21);
    b.opset("com.microsoft", 1);
    b.input("a", DType::Float32, {2, 3, K});
    b.output("y", DType::Float32);
    b.initializer("B", random_tensor(DType::UInt8, {N, blocks, block / 2}, 0, 255));
    b.initializer("scales", random_tensor(DType::Float32, {N * blocks}, 0.01, 0.1));
    std::vector<std::string> in = {"a", "B", "scales"};
    if (zero_points) {
      b.initializer("zp", random_tensor(DType::UInt8, {N * ((blocks + 1) / 2)}, 0, 255));
      in.push_back("zp");
    }
    b.node("MatMulNBits", in, {"y"}, {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}}, "com.microsoft");
    Graph g = expect_fusion_preserves_results(b.save(dir + "/m.onnx"),
                                              {{"a", random_tensor(DType::Float32, {2, 3, K})}}, 1);
    CHECK(g.quantized_nodes()[0]->weight->pattern == "MatMulNBits");
  }
}

TEST_CASE("fake-quant Q -> Clip -> DQ becomes packed int4", "[importer][int4]") {
  std::string dir = temp_dir("fuse_fake");
  for (bool signed_range : {true, false}) {
    ModelBuilder b(13);
    b.input("a", DType::Float32, {3, 12});
    b.output("y", DType::Float32);
    b.initializer("w", random_tensor(DType::Float32, {12, 5}, -1, 1));
    b.initializer("s", random_tensor(DType::Float32, {5}, 0.1, 0.2));
    DType zt = signed_range ? DType::Int8 : DType::UInt8;
    b.initializer("zp", Tensor::from_ints(zt, {5}, signed_range ? std::vector<int64_t>{0, 1, -1, 2, 0}
                                                                  : std::vector<int64_t>{8, 7, 9, 8, 8}));
    b.initializer("lo", Tensor::from_ints(zt, {}, {signed_range ? -8 : 0}));
    b.initializer("hi", Tensor::from_ints(zt, {}, {signed_range ? 7 : 15}));
    b.node("QuantizeLinear", {"w", "s", "zp"}, {"q"}, {{"axis", 1}});
    b.node("Clip", {"q", "lo", "hi"}, {"qc"});
    b.node("DequantizeLinear", {"qc", "s", "zp"}, {"wf"}, {{"axis", 1}});
    b.node("MatMul", {"a", "wf"}, {"y"});
    Graph g = expect_fusion_preserves_results(b.save(dir + "/m.onnx"),
                                              {{"a", random_tensor(DType::Float32, {3, 12})}}, 1);
    const QuantizedWeight& w = *g.quantized_nodes()[0]->weight;
    CHECK(w.pattern == "FakeQuant");
    CHECK(w.data.dtype() == (signed_range ? DType::Int4 : DType::UInt4));
    CHECK(g.initializers.count("w") == 0);  // the fp32 weight is not kept
  }
}
