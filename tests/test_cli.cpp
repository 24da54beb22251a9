// The tetra CLI end to end: inspect, run with every way of giving inputs, and its error paths
// (exit status 2, one clear message, no partial output files).
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "runtime/tensor_io.h"
#include "tools/model_builder.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace tetra;
using namespace tetra::test;

namespace {

// y = DQ(int4 blocked weight) applied to x [B, 20], with a dynamic batch dim.
std::string int4_model(const std::string& dir) {
  ModelBuilder b(21);
  b.input("x", DType::Float32, {-1, 20});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Int4, {20, 6}, -8, 7));
  b.initializer("s", random_tensor(DType::Float32, {2, 6}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}, {"block_size", 16}});
  b.node("MatMul", {"x", "wf"}, {"y"});
  return b.save(dir + "/int4.onnx");
}

}  // namespace

TEST_CASE("tetra inspect lists int4 weights and unsupported ops", "[cli]") {
  std::string dir = temp_dir("cli_inspect");
  std::string model = int4_model(dir);
  std::string out;
  REQUIRE(run_command(tetra_cli() + " inspect " + model, &out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("x: float32[x_d0,20]"));  // symbolic batch
  CHECK_THAT(out, Catch::Contains("DequantizeLinear"));
  CHECK_THAT(out, Catch::Contains("blocked(axis 0, 16)"));
  CHECK_THAT(out, Catch::Contains("60 bytes packed + 48 bytes of scales"));  // 120 nibbles; 2x6 fp32 scales
  CHECK_THAT(out, Catch::Contains("unsupported ops: none"));
  CHECK_THAT(out, Catch::Contains("halide backend: 1 of 1 nodes compiled"));
  REQUIRE(run_command(tetra_cli() + " inspect --json " + model, &out) == 0);
  CHECK_THAT(out, Catch::Contains("\"int4_weights\""));
}

TEST_CASE("tetra inspect --target hip:ARCH builds the GPU kernels and reports their resources", "[cli][gpu]") {
  std::string dir = temp_dir("cli_inspect_gpu");
  std::string model = int4_model(dir);
  std::string out;
  // The decode GEMV, for a 64-wide (gfx9) and a 32-wide (gfx11) wave.
  for (const auto& [arch, wave] : {std::pair<std::string, int>{"gfx90a", 64}, {"gfx1100", 32}}) {
    REQUIRE(run_command(tetra_cli() + " inspect --json " + model + " --target hip:" + arch + " --shape x=1,20", &out) ==
            0);
    nlohmann::json gpu = nlohmann::json::parse(out)["gpu"];
    INFO(gpu.dump(1));
    CHECK(gpu["arch"] == arch);
    REQUIRE(gpu["workloads"].size() == 1);
    const nlohmann::json& w = gpu["workloads"][0];
    CHECK(w["schedule"]["template"] == "gpu_int4_gemv");
    CHECK(w["schedule"]["knobs"]["tile_n"] == wave);  // a block is whole waves
    CHECK(w["schedule_source"] == "default schedule");
    REQUIRE(w["kernels"].size() == 1);
    const nlohmann::json& r = w["kernels"][0]["resources"];
    CHECK(r["wavefront"] == wave);
    CHECK(r["vgprs"].get<int>() > 0);
    CHECK(r["spills"] == 0);
    CHECK(r["scratch_bytes"] == 0);
    CHECK(r["waves_per_simd"].get<int>() > 0);
    CHECK(gpu["whole_model"]["on_device"] == true);
    CHECK(gpu["whole_model"]["launches"].get<int>() >= 1);
  }
  REQUIRE(run_command(tetra_cli() + " inspect " + model + " --target hip:gfx942 --shape x=1,20", &out) == 0);
  CHECK_THAT(out, Catch::Contains("GPU kernels for hip-gfx942"));
  CHECK_THAT(out, Catch::Contains("0 spills, wave 64, 8 waves per SIMD"));
  CHECK_THAT(out, Catch::Contains("whole model on hip-gfx942: every node on the device"));
  // A node with no GPU kernel: named, with why the model would not stay on the device.
  {
    ModelBuilder b(21, "quantized_activation");
    b.input("x", DType::Float32, {2, 3});
    b.output("y", DType::Float32);
    b.initializer("scale", Tensor::scalar(DType::Float32, 0.05));
    b.initializer("zero_point", Tensor(DType::Int8, {}));
    b.node("QuantizeLinear", {"x", "scale", "zero_point"}, {"q"});
    b.node("DequantizeLinear", {"q", "scale", "zero_point"}, {"y"});
    const std::string quantized = b.save(dir + "/quantized_activation.onnx");
    REQUIRE(run_command(tetra_cli() + " inspect " + quantized + " --target hip:gfx942", &out) == 0);
    CHECK_THAT(out, Catch::Contains("whole model on hip-gfx942: no: ") && Catch::Contains("QuantizeLinear '"));
  }
  // More rows than the GEMV takes: the GEMM.
  REQUIRE(run_command(tetra_cli() + " inspect " + model + " --target hip:gfx942 --shape x=64,20", &out) == 0);
  CHECK_THAT(out, Catch::Contains("\"template\":\"gpu_int4_gemm\""));
  CHECK_THAT(out, Catch::Contains("0 B scratch, 0 spills, wave 64"));
  // A dynamic input left unbound, and a target that is not a GPU: clear errors.
  CHECK(run_command(tetra_cli() + " inspect " + model + " --target hip:gfx942", &out) != 0);
  CHECK_THAT(out, Catch::Contains("bind it with --shape x="));
  CHECK(run_command(tetra_cli() + " inspect " + model + " --target x86-64-avx2 --shape x=1,20", &out) != 0);
  CHECK_THAT(out, Catch::Contains("give hip:ARCH"));
}

TEST_CASE("tetra run: test-data folders, --input files, random inputs, dynamic shapes", "[cli]") {
  std::string dir = temp_dir("cli_run");
  std::string model = int4_model(dir);
  std::string data = dir + "/data";
  fs::create_directories(data);
  write_tensor_pb(data + "/input_0.pb", random_tensor(DType::Float32, {3, 20}), "not_the_model_name");
  std::string out;
  REQUIRE(run_command(tetra_cli() + " run " + model + " --test-data " + data + " --output-dir " + dir + "/o1", &out) == 0);
  Tensor y = read_tensor_pb(dir + "/o1/output_0.pb").tensor;
  CHECK(y.shape() == Shape{3, 6});

  // The written output becomes the expected output: the check passes, then fails when perturbed.
  fs::copy_file(dir + "/o1/output_0.pb", data + "/output_0.pb");
  REQUIRE(run_command(tetra_cli() + " run " + model + " --test-data " + data, &out) == 0);
  CHECK_THAT(out, Catch::Contains("max abs error 0"));
  y.set(4, y.get(4) + 0.5);
  write_tensor_pb(data + "/output_0.pb", y, "y");
  CHECK(run_command(tetra_cli() + " run " + model + " --test-data " + data, &out) == 1);
  CHECK_THAT(out, Catch::Contains("FAIL (1 of 18"));

  REQUIRE(run_command(tetra_cli() + " run " + model + " --input x=" + data + "/input_0.pb", &out) == 0);
  CHECK_THAT(out, Catch::Contains("float32[3,6]"));
  REQUIRE(run_command(tetra_cli() + " run " + model + " --random-inputs --shape x=5,20", &out) == 0);
  CHECK_THAT(out, Catch::Contains("float32[5,6]"));
}

TEST_CASE("tetra run reads NumPy .npy inputs", "[cli]") {
  std::string dir = temp_dir("cli_npy");
  std::string model = int4_model(dir);
  Tensor x = random_tensor(DType::Float32, {2, 20});
  // A version 1.0 .npy file: magic, header length, a dict padded to 64 bytes, then the data.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 20), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header.push_back('\n');
  {
    std::ofstream f(dir + "/x.npy", std::ios::binary);
    f << "\x93NUMPY" << char(1) << char(0) << char(header.size() & 0xFF) << char(header.size() >> 8) << header;
    f.write(reinterpret_cast<const char*>(x.bytes()), x.byte_size());
  }
  write_tensor_pb(dir + "/x.pb", x, "x");
  std::string out;
  REQUIRE(run_command(tetra_cli() + " run " + model + " --input x=" + dir + "/x.npy --output-dir " + dir + "/a", &out) == 0);
  REQUIRE(run_command(tetra_cli() + " run " + model + " --input x=" + dir + "/x.pb --output-dir " + dir + "/b", &out) == 0);
  CHECK(compare_tensors(read_tensor_pb(dir + "/a/output_0.pb").tensor, read_tensor_pb(dir + "/b/output_0.pb").tensor, 0, 0) == "");
  // A truncated .npy is refused.
  std::filesystem::resize_file(dir + "/x.npy", 100);
  CHECK(run_command(tetra_cli() + " run " + model + " --input x=" + dir + "/x.npy", &out) == 2);
  CHECK_THAT(out, Catch::Contains("x.npy"));
}

TEST_CASE("tetra run errors exit 2 and write nothing", "[cli][errors]") {
  std::string dir = temp_dir("cli_errors");
  std::string model = int4_model(dir);
  std::string out;
  auto fails = [&](const std::string& args, const std::string& needle) {
    std::string o = dir + "/never";
    int rc = run_command(tetra_cli() + " run " + args + " --output-dir " + o, &out);
    INFO(out);
    CHECK(rc == 2);
    CHECK_THAT(out, Catch::Contains(needle));
    CHECK(!fs::exists(o));
  };
  fails(model + " --random-inputs", "--shape x=");                 // dynamic dim not bound
  fails(model + " --random-inputs --shape x=5,21", "'x'");         // wrong shape
  fails(model + " --input y=" + dir + "/none.pb", "no input 'y'");  // unknown input
  fails(model + " --input x=" + dir + "/none.pb", "does not exist");
  fails(model, "'x' was not given");
  fails(dir + "/missing.onnx --random-inputs", "does not exist");
  fails(model + " --random-inputs --shape x=5,20 --backend nope", "unknown backend");
  fails(model + " --random-inputs --shape x=5,20 --shape q=1", "no input 'q'");
  fails(model + " --random-inputs --shape x=5,a", "bad dimension 'a'");
}

TEST_CASE("tetra run --check --explain and tetra bench --json on the Halide backend", "[cli][halide]") {
  std::string dir = temp_dir("cli_bench");
  std::string model = int4_model(dir);
  std::string out;
  REQUIRE(run_command(tetra_cli() + " run " + model + " --random-inputs --shape x=3,20 --check --explain", &out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("halide (") && Catch::Contains("against the reference"));
  REQUIRE(run_command(tetra_cli() + " bench " + model + " --shape x=2,20 --repeat 3 --json", &out) == 0);
  auto report = nlohmann::json::parse(out);
  CHECK(report["median_ms"].get<double>() > 0);
  CHECK(report["kernels"].size() == 1);
  CHECK(report["kernels"][0]["backend"] == "halide");
  CHECK(run_command(tetra_cli() + " bench " + model + " --shape x=2,20 --repeat 0", &out) == 2);
}

TEST_CASE("compiled kernels are reused from the disk cache by the next process", "[cli][halide]") {
  std::string dir = temp_dir("cli_kernel_cache");
  std::string model = int4_model(dir);
  std::string cache = dir + "/kernels";
  std::string run = tetra_cli() + " run " + model + " --random-inputs --shape x=2,20 --explain --kernel-cache " + cache;
  std::string first, second;
  REQUIRE(run_command(run, &first) == 0);
  CHECK_THAT(first, !Catch::Contains("loaded from the kernel cache"));
  CHECK(!std::filesystem::is_empty(cache));
  REQUIRE(run_command(run, &second) == 0);
  INFO(second);
  CHECK_THAT(second, Catch::Contains("loaded from the kernel cache"));
  // Same inputs (same seed), same outputs, whichever way the kernel was obtained.
  CHECK(first.substr(first.find("output")) == second.substr(second.find("output")));
}
