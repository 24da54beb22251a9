// The executor's static memory plan (runtime/memory_plan.h): buffers live at a common node never
// share bytes, the arena is smaller than the values it holds, a Concat's inputs are written in place,
// and runs on the plan give the reference's results on fresh data every time.
#include <algorithm>
#include <catch2/catch.hpp>

#include "runtime/executor.h"
#include "runtime/memory_plan.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

TEST_CASE("buffers live at a common node never share bytes", "[memory_plan]") {
  std::uniform_int_distribution<int> count(1, 40), node(0, 30), size(1, 5000);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<LiveBuffer> buffers(count(rng()));
    int64_t total = 0, widest_node = 0;
    for (LiveBuffer& b : buffers) {
      b.bytes = size(rng());
      b.first = node(rng());
      b.last = b.first + node(rng()) % 6;
      total += b.bytes;
    }
    for (int k = 0; k <= 36; ++k) {
      int64_t live = 0;
      for (const LiveBuffer& b : buffers) live += (b.first <= size_t(k) && size_t(k) <= b.last) ? b.bytes : 0;
      widest_node = std::max(widest_node, live);
    }
    ArenaLayout layout = lay_out_buffers(buffers, 64);
    INFO("trial " << trial);
    REQUIRE(layout.offsets.size() == buffers.size());
    for (size_t i = 0; i < buffers.size(); ++i) {
      CHECK(layout.offsets[i] % 64 == 0);
      CHECK(layout.offsets[i] + buffers[i].bytes <= layout.bytes);
      for (size_t j = i + 1; j < buffers.size(); ++j) {
        bool same_time = buffers[i].first <= buffers[j].last && buffers[j].first <= buffers[i].last;
        bool same_bytes = layout.offsets[i] < layout.offsets[j] + buffers[j].bytes &&
                          layout.offsets[j] < layout.offsets[i] + buffers[i].bytes;
        CHECK_FALSE((same_time && same_bytes));
      }
    }
    // Never less than the bytes live at the busiest node, never more than no sharing at all (plus
    // alignment).
    CHECK(layout.bytes >= widest_node);
    CHECK(layout.bytes <= total + 64 * int64_t(buffers.size()));
  }
}

namespace {

// Two conv branches concatenated on channels (batch 1: each branch is a contiguous slice of the
// output), a view (Reshape) of an intermediate read again near the end, so the view keeps its
// storage live, and a chain long enough for buffers to be reused.
Graph branchy_model(const std::string& dir) {
  ModelBuilder b(13);
  b.input("x", DType::Float32, {1, 8, 12, 12});
  b.output("y", DType::Float32);
  b.initializer("wa", random_tensor(DType::Float32, {16, 8, 3, 3}, -0.3, 0.3));
  b.initializer("wb", random_tensor(DType::Float32, {8, 8, 1, 1}, -0.3, 0.3));
  b.initializer("wc", random_tensor(DType::Float32, {24, 24, 3, 3}, -0.1, 0.1));
  b.initializer("flat", Tensor::from_ints(DType::Int64, {2}, {1, -1}));
  b.initializer("back", Tensor::from_ints(DType::Int64, {4}, {1, 16, 12, 12}));
  b.node("Conv", {"x", "wa"}, {"a"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"a"}, {"a_relu"});
  b.node("Reshape", {"a_relu", "flat"}, {"a_flat"});  // a view, read again by the last Add
  b.node("Conv", {"x", "wb"}, {"bb"});
  b.node("Sigmoid", {"bb"}, {"b_sig"});
  b.node("Concat", {"a_relu", "b_sig"}, {"cat"}, {{"axis", int64_t(1)}});
  b.node("Conv", {"cat", "wc"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"c"}, {"c_relu"});
  b.node("Conv", {"c_relu", "wc"}, {"d"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Slice", {"d", "s_start", "s_end", "s_axes"}, {"d_head"});
  b.initializer("s_start", Tensor::from_ints(DType::Int64, {1}, {0}));
  b.initializer("s_end", Tensor::from_ints(DType::Int64, {1}, {16}));
  b.initializer("s_axes", Tensor::from_ints(DType::Int64, {1}, {1}));
  b.node("Reshape", {"a_flat", "back"}, {"a_back"});
  b.node("Add", {"d_head", "a_back"}, {"y"});
  return load_model(b.save(dir + "/m.onnx"));
}

}  // namespace

TEST_CASE("runs on the memory plan give the reference's results on fresh data", "[memory_plan][executor]") {
  Graph graph = branchy_model(temp_dir("memory_plan"));
  Executor executor(graph, ExecutorOptions{Backend::Halide, 0, nullptr, ""});
  CHECK(executor.memory_stats().arena_bytes == 0);  // made by the first run
  for (int run = 0; run < 4; ++run) {
    INFO("run " << run);
    TensorMap in = {{"x", random_tensor(DType::Float32, {1, 8, 12, 12})}};
    TensorMap got = executor.run(in);
    TensorMap want = run_reference(graph, in);
    CHECK(compare_tensors(got.at("y"), want.at("y"), 1e-4, 1e-4) == "");
  }
  Executor::MemoryStats stats = executor.memory_stats();
  // Eight intermediates of 4.5-18 KB; the reuse holds them in less than their sum.
  CHECK(stats.arena_bytes > 0);
  CHECK(stats.arena_bytes < stats.value_bytes);
  CHECK(stats.concats_in_place == 1);
  CHECK(stats.predicted);  // every shape is known before running, and the views are the table's
}

TEST_CASE("the memory plan is made again when the input shapes change", "[memory_plan][executor]") {
  std::string dir = temp_dir("memory_plan_shapes");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {1, 4, -1, -1});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Float32, {6, 4, 3, 3}, -0.3, 0.3));
  b.node("Conv", {"x", "w"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"c"}, {"r"});
  b.node("Concat", {"r", "c"}, {"cat"}, {{"axis", int64_t(1)}});
  b.node("Sigmoid", {"cat"}, {"y"});
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  Executor executor(graph, ExecutorOptions{Backend::Halide, 0, nullptr, ""});
  int64_t last_arena = 0;
  for (int64_t side : {8, 8, 20, 20, 5, 8}) {
    INFO("side " << side);
    TensorMap in = {{"x", random_tensor(DType::Float32, {1, 4, side, side})}};
    TensorMap got = executor.run(in);
    CHECK(compare_tensors(got.at("y"), run_reference(graph, in).at("y"), 1e-5, 1e-5) == "");
    // c, r and cat: cat holds the other two (12 channels of side^2 floats).
    CHECK(executor.memory_stats().arena_bytes == 12 * side * side * 4);
    CHECK(executor.memory_stats().concats_in_place == 1);
    CHECK(executor.memory_stats().predicted);
    last_arena = executor.memory_stats().arena_bytes;
  }
  CHECK(last_arena == 12 * 8 * 8 * 4);
}

TEST_CASE("a graph whose shapes are known only when it runs is planned from its first run", "[memory_plan][executor]") {
  // The Reshape's target is a graph input: its output's shape, and everything after it, is known only
  // once the input's values are. The view r of m is read last, after four Transposes whose buffers
  // take turns in two places.
  std::string dir = temp_dir("memory_plan_observed");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {2, 6, 10});
  b.input("shape", DType::Int64, {3});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Float32, {10, 10}));
  b.node("MatMul", {"x", "w"}, {"m"});
  b.node("Reshape", {"m", "shape"}, {"r"});
  std::string last = "r";
  for (int k = 1; k <= 4; ++k) {
    std::string t = "t" + std::to_string(k);
    b.node("Transpose", {last}, {t}, {{"perm", std::vector<int64_t>{2, 1, 0}}});
    last = t;
  }
  b.node("Add", {last, "r"}, {"y"});
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  Executor executor(graph, ExecutorOptions{Backend::Halide, 0, nullptr, ""});
  for (int run = 0; run < 3; ++run) {
    INFO("run " << run);
    TensorMap in = {{"x", random_tensor(DType::Float32, {2, 6, 10})},
                    {"shape", Tensor::from_ints(DType::Int64, {3}, {12, 5, 2})}};
    TensorMap got = executor.run(in);
    CHECK(compare_tensors(got.at("y"), run_reference(graph, in).at("y"), 1e-5, 1e-5) == "");
    // m (with its view r) and t1..t4, 480 bytes each, in three places.
    CHECK(executor.memory_stats().value_bytes == 5 * 480);
    CHECK(executor.memory_stats().arena_bytes == 2 * 512 + 480);
    CHECK_FALSE(executor.memory_stats().predicted);
  }
}

TEST_CASE("a Concat places the inputs it can and copies the rest", "[memory_plan][executor]") {
  // a and b go into cat around the constant c, which the Concat copies; the concat along H (channels
  // before it) has its inputs one strided window each, so nothing is placed in it.
  std::string dir = temp_dir("memory_plan_concat");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {1, 4, 6, 6});
  b.output("y", DType::Float32);
  b.output("z", DType::Float32);
  b.initializer("w", random_tensor(DType::Float32, {6, 4, 3, 3}, -0.3, 0.3));
  b.initializer("c", random_tensor(DType::Float32, {1, 2, 6, 6}));
  b.node("Conv", {"x", "w"}, {"a"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"x"}, {"b"});
  b.node("Concat", {"a", "c", "b"}, {"cat"}, {{"axis", int64_t(1)}});
  b.node("Sigmoid", {"cat"}, {"y"});
  b.node("Concat", {"a", "a"}, {"rows"}, {{"axis", int64_t(2)}});
  b.node("Neg", {"rows"}, {"z"});
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  Executor executor(graph, ExecutorOptions{Backend::Halide, 0, nullptr, ""});
  for (int run = 0; run < 3; ++run) {
    INFO("run " << run);
    TensorMap in = {{"x", random_tensor(DType::Float32, {1, 4, 6, 6})}};
    TensorMap got = executor.run(in);
    TensorMap want = run_reference(graph, in);
    CHECK(compare_tensors(got.at("y"), want.at("y"), 1e-5, 1e-5) == "");
    CHECK(compare_tensors(got.at("z"), want.at("z"), 1e-5, 1e-5) == "");
  }
  Executor::MemoryStats stats = executor.memory_stats();
  CHECK(stats.concats_in_place == 0);  // c is not placed, and the rows concat places nothing
  CHECK(stats.predicted);
  // a lives inside cat, so cat's 12 channels stay reserved until the rows concat reads a, and rows
  // (6 channels of 12 x 6) needs bytes of its own beside them.
  CHECK(stats.arena_bytes >= (12 + 12) * 36 * 4);
}
