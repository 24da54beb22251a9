// Model libraries compiled ahead of time (`tetra compile`, runtime/aot/): the round trip
// compile -> link (C and C++, through CMake) -> run, checked against `tetra run` and the reference
// evaluator; the C API's error codes and concurrency (tests/aot/api_check.cpp); no libHalide, libonnx
// or protobuf at run time; a library for another x86 target; the compiler's own errors.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "dsl/core/kernel_spec.h"
#include "dsl/target.h"
#include "examples/example_models.h"
#include "importer/error.h"
#include "runtime/graph_io.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "runtime/tensor_io.h"
#include "tests/example_files.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

namespace fs = std::filesystem;
using namespace tetra;
using namespace tetra::test;

namespace {

std::string compile(const std::string& model, const std::string& out, const std::string& args) {
  std::string log;
  int rc = run_command(tetra_cli() + " compile " + model + " -o " + out + " " + args, &log);
  INFO(log);
  REQUIRE(rc == 0);
  return log;
}

// Configures and builds the CMake project in `project` against the library in `prefix`; the path of
// its executable `target`.
std::string build_program(const std::string& project, const std::string& prefix, const std::string& name,
                          const std::string& build_dir, const std::string& target) {
  std::string log;
  int rc = run_command("cmake -S " + project + " -B " + build_dir + " -DCMAKE_PREFIX_PATH=" + prefix +
                           " -DTETRA_MODEL=" + name + " -DCMAKE_BUILD_TYPE=Release && cmake --build " + build_dir,
                       &log);
  INFO(log);
  REQUIRE(rc == 0);
  return build_dir + "/" + target;
}

// A random input: its raw bytes for the programs, and a .pb for `tetra run`.
struct Input {
  Tensor tensor;
  std::string raw, pb;
};
Input write_input(const std::string& dir, const std::string& name, const Shape& shape) {
  Input in{random_tensor(DType::Float32, shape), dir + "/" + name + ".bin", dir + "/" + name + ".pb"};
  std::ofstream(in.raw, std::ios::binary).write(reinterpret_cast<const char*>(in.tensor.bytes()), in.tensor.byte_size());
  write_tensor_pb(in.pb, in.tensor, name);
  return in;
}

// The values a program printed as "NAME INDEX VALUE" lines, as a tensor of `shape`.
Tensor printed_output(const std::string& text, const Shape& shape) {
  std::vector<double> values;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("device: ", 0) == 0 || line.rfind("not on a GPU: ", 0) == 0) continue;  // on stderr
    std::istringstream fields(line);
    std::string name;
    size_t index;
    double value;
    REQUIRE((fields >> name >> index >> value));
    values.push_back(value);
  }
  REQUIRE(int64_t(values.size()) == num_elements(shape));
  return Tensor::from_doubles(DType::Float32, shape, values);
}

// What `tetra run` (the JIT runtime) computes on the same input.
Tensor jit_output(const std::string& model, const std::string& dir, const std::string& input, const std::string& pb,
                  const std::string& args = "") {
  std::string log;
  REQUIRE(run_command(tetra_cli() + " run " + model + " --input " + input + "=" + pb + " --output-dir " + dir + "/jit " +
                          args,
                      &log) == 0);
  return read_tensor_pb(dir + "/jit/output_0.pb").tensor;
}

// The reference evaluator's result, and the tolerance of fp32 arithmetic in another order.
void check_against_reference(const Tensor& got, const std::string& model, const std::string& input,
                             const Tensor& value) {
  Graph graph = load_model(model, {{input, value.shape()}});
  Tensor ref = run_reference(graph, {{input, value}}).at(graph.outputs[0].name);
  double scale = 0;
  for (int64_t k = 0; k < ref.size(); ++k) scale = std::max(scale, std::fabs(ref.get(k)));
  CHECK(compare_tensors(got, ref, 1e-4 * (1 + scale), 0) == "");
}

// The symbols an archive needs from elsewhere: undefined in some member and defined in none.
std::string undefined_symbols(const std::string& archive) {
  std::string undefined, defined;
  REQUIRE(run_command("nm -C -u " + archive + " | grep ' U ' | sed 's/^ *U //' | sort -u", &undefined) == 0);
  REQUIRE(run_command("nm -C --defined-only " + archive + " | grep -E '^[0-9a-f]+ ' | cut -d' ' -f3- | sort -u",
                      &defined) == 0);
  std::set<std::string> have;
  std::istringstream d(defined), u(undefined);
  for (std::string line; std::getline(d, line);) have.insert(line);
  std::string out;
  for (std::string line; std::getline(u, line);)
    if (!have.count(line)) out += line + "\n";
  return out;
}

bool mentions_any(const std::string& text, const std::vector<std::string>& words) {
  for (const std::string& w : words)
    if (text.find(w) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("a compiled MLP links from C and C++ through CMake and matches tetra run and the reference", "[aot]") {
  std::string dir = temp_dir("aot_mlp");
  std::string model = int4_example(dir, "mlp");
  std::string log = compile(model, dir + "/lib", "--name tmlp --shape x=3,64 --shared");
  CHECK_THAT(log, Catch::Contains("default schedule (no tuning database)"));  // says where schedules came from
  for (const char* f : {"include/tmlp.h", "lib/libtmlp.a", "lib/libtmlp.so", "lib/cmake/tmlp/tmlpConfig.cmake",
                        "lib/pkgconfig/tmlp.pc", "tmlp.kernels.json"})
    CHECK(fs::exists(dir + "/lib/" + f));

  Input x = write_input(dir, "x", {3, 64});
  Tensor jit = jit_output(model, dir, "x", x.pb);
  std::string c_program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tmlp", dir + "/c", "run_model");
  std::string cpp_program =
      build_program(source_dir() + "/examples/aot_cpp", dir + "/lib", "tmlp", dir + "/cpp", "run_model");
  for (const std::string& command : {c_program + " " + x.raw, cpp_program + " --instances 3 " + x.raw}) {
    std::string out;
    REQUIRE(run_command(command, &out) == 0);
    Tensor got = printed_output(out, {3, 10});
    CHECK(compare_tensors(got, jit, 1e-6, 1e-5) == "");  // the same kernels and schedules as the JIT
    check_against_reference(got, model, "x", x.tensor);
  }

  // No compiler at run time: neither the program nor the shared library loads libHalide, libonnx or
  // protobuf, and the static library needs none of their symbols.
  for (const std::string& binary : {c_program, dir + "/lib/lib/libtmlp.so"}) {
    std::string deps;
    REQUIRE(run_command("ldd " + binary, &deps) == 0);
    INFO(deps);
    CHECK_FALSE(mentions_any(deps, {"Halide", "onnx", "protobuf", "LLVM"}));
  }
  std::string undefined = undefined_symbols(dir + "/lib/lib/libtmlp.a");
  INFO(undefined);
  CHECK_FALSE(mentions_any(undefined, {"Halide::", "onnx::", "google::protobuf"}));
  CHECK_THAT(undefined, !Catch::Contains("halide_"));  // the one Halide runtime is inside
  CHECK_THAT(undefined, Catch::Contains("std::"));       // (the check sees C++ symbols)
  // The shared library exports the API and nothing else.
  std::string exported;
  REQUIRE(run_command("nm -D --defined-only " + dir + "/lib/lib/libtmlp.so", &exported) == 0);
  std::istringstream symbols(exported);
  std::string address, type, symbol;
  while (symbols >> address >> type >> symbol) CHECK(symbol.rfind("tmlp_", 0) == 0);

  // The C API's error codes and concurrent instances.
  std::string api_check =
      build_program(source_dir() + "/tests/aot", dir + "/lib", "tmlp", dir + "/api", "api_check");
  std::string out;
  int rc = run_command(api_check, &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains(", 0 failed"));
}

TEST_CASE("a float-weight MLP compiles into a library whose table carries each kernel's spec", "[aot]") {
  std::string dir = temp_dir("aot_float");
  std::string model = example_mlp(rng()).save(dir + "/mlp.onnx");  // float32 weights, not quantized
  compile(model, dir + "/lib", "--name tmlpf --shape x=3,64");
  // The table names each kernel's spec: its weight format (float32 here), layout and target.
  nlohmann::json table = nlohmann::json::parse(std::ifstream(dir + "/lib/tmlpf.kernels.json"));
  int specs = 0;
  for (const nlohmann::json& k : table) {
    if (!k.contains("spec")) continue;
    ++specs;
    dsl::Result<dsl::KernelSpec> spec = dsl::KernelSpec::from_json(k["spec"]);
    REQUIRE(spec.ok());
    CHECK(spec.value().weight.float_bits == 32);
    CHECK(spec.value().target == dsl::host_target().name);
  }
  CHECK(specs > 0);

  Input x = write_input(dir, "x", {3, 64});
  Tensor jit = jit_output(model, dir, "x", x.pb);
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tmlpf", dir + "/c", "run_model");
  std::string out;
  REQUIRE(run_command(program + " " + x.raw, &out) == 0);
  Tensor got = printed_output(out, {3, 10});
  CHECK(compare_tensors(got, jit, 1e-6, 1e-5) == "");
  check_against_reference(got, model, "x", x.tensor);
}

TEST_CASE("GEMMs of one shape with different epilogues get a kernel each in a library", "[aot]") {
  // y = (x W1) W2 + x W1: two int4 GEMMs of the same workload key, the second with a residual in its
  // kernel. Keyed by workload alone, the library would hold one kernel for both.
  std::string dir = temp_dir("aot_epilogues");
  ModelBuilder b(21);
  b.input("x", DType::Float32, {3, 64});
  b.output("y", DType::Float32);
  for (const char* w : {"1", "2"}) {
    b.initializer(std::string("w") + w, random_tensor(DType::Int4, {64, 64}, -8, 7));
    b.initializer(std::string("s") + w, random_tensor(DType::Float32, {2, 64}, 0.02, 0.1));
    b.node("DequantizeLinear", {std::string("w") + w, std::string("s") + w}, {std::string("wf") + w},
           {{"axis", 0}, {"block_size", 32}});
  }
  b.node("MatMul", {"x", "wf1"}, {"h"});
  b.node("MatMul", {"h", "wf2"}, {"d"});
  b.node("Add", {"d", "h"}, {"y"});
  std::string model = b.save(dir + "/m.onnx");
  compile(model, dir + "/lib", "--name tepi --shape x=3,64");
  nlohmann::json table = nlohmann::json::parse(std::ifstream(dir + "/lib/tepi.kernels.json"));
  int gemms = 0;
  for (const nlohmann::json& k : table) gemms += k.contains("spec") && k["spec"]["op"] == "qmatmul";
  CHECK(gemms == 2);

  Input x = write_input(dir, "x", {3, 64});
  Tensor jit = jit_output(model, dir, "x", x.pb);
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tepi", dir + "/c", "run_model");
  std::string out;
  REQUIRE(run_command(program + " " + x.raw, &out) == 0);
  CHECK(compare_tensors(printed_output(out, {3, 64}), jit, 1e-6, 1e-5) == "");
  check_against_reference(printed_output(out, {3, 64}), model, "x", x.tensor);
}

TEST_CASE("a library runs attention that reads a packed QKV projection in place", "[aot][attention]") {
  // x [1, T, 3*H*D] -> Q, K, V by Reshape, Transpose and Gathers -> scaled attention -> Transpose back:
  // the library's attention kernel takes the views, the scale and the transposed result.
  const int64_t T = 21, H = 2, D = 8;
  std::string dir = temp_dir("aot_attention");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {1, T, 3 * H * D});
  b.output("y", DType::Float32);
  b.initializer("packed", Tensor::from_ints(DType::Int64, {5}, {1, T, 3, H, D}));
  b.initializer("merged", Tensor::from_ints(DType::Int64, {3}, {1, T, H * D}));
  for (int64_t i = 0; i < 3; ++i) b.initializer("i" + std::to_string(i), Tensor::from_ints(DType::Int64, {}, {i}));
  b.initializer("c", Tensor::scalar(DType::Float32, 0.3));
  b.node("Reshape", {"x", "packed"}, {"x5"});
  b.node("Transpose", {"x5"}, {"qkv"}, {{"perm", std::vector<int64_t>{2, 0, 3, 1, 4}}});
  b.node("Gather", {"qkv", "i0"}, {"q"}, {{"axis", int64_t(0)}});
  b.node("Gather", {"qkv", "i1"}, {"k"}, {{"axis", int64_t(0)}});
  b.node("Gather", {"qkv", "i2"}, {"v"}, {{"axis", int64_t(0)}});
  b.node("Transpose", {"k"}, {"kt"}, {{"perm", std::vector<int64_t>{0, 1, 3, 2}}});
  b.node("MatMul", {"q", "kt"}, {"s"});
  b.node("Mul", {"s", "c"}, {"scaled"});
  b.node("Softmax", {"scaled"}, {"p"}, {{"axis", int64_t(-1)}});
  b.node("MatMul", {"p", "v"}, {"o"});
  b.node("Transpose", {"o"}, {"ot"}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
  b.node("Reshape", {"ot", "merged"}, {"y"});
  std::string model = b.save(dir + "/m.onnx");
  const Shape shape = {1, T, 3 * H * D};
  compile(model, dir + "/lib", "--name tatt --shape x=1," + std::to_string(T) + "," + std::to_string(3 * H * D));

  Input x = write_input(dir, "x", shape);
  Tensor jit = jit_output(model, dir, "x", x.pb);
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tatt", dir + "/c", "run_model");
  std::string out;
  REQUIRE(run_command(program + " " + x.raw, &out) == 0);
  const Shape y_shape = {1, T, H * D};
  CHECK(compare_tensors(printed_output(out, y_shape), jit, 1e-6, 1e-5) == "");
  check_against_reference(printed_output(out, y_shape), model, "x", x.tensor);
}

TEST_CASE("a library compiled with int8 activations runs the JIT's int8 kernels", "[aot][int8]") {
  if (!dsl::host_target().has_int8_dot()) {
    WARN("this CPU has no AVX512-VNNI: no int8-activation kernels to compile");
    return;
  }
  std::string dir = temp_dir("aot_int8");
  std::string model = int4_example(dir, "mlp");
  std::string log = compile(model, dir + "/lib", "--name tmlp8 --shape x=3,64 --int8-activations");
  CHECK_THAT(log, Catch::Contains("cpu_int4_vnni"));
  Input x = write_input(dir, "x", {3, 64});
  Tensor jit = jit_output(model, dir, "x", x.pb, "--int8-activations");
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tmlp8", dir + "/c", "run_model");
  std::string out;
  REQUIRE(run_command(program + " " + x.raw, &out) == 0);
  Tensor got = printed_output(out, {3, 10});
  CHECK(compare_tensors(got, jit, 1e-6, 1e-5) == "");
  // Not the float32 result: the activations really were quantized, within what int8 allows.
  Graph graph = load_model(model, {{"x", {3, 64}}});
  Tensor ref = run_reference(graph, {{"x", x.tensor}}).at(graph.outputs[0].name);
  double scale = 0, error = 0;
  for (int64_t k = 0; k < ref.size(); ++k) {
    scale = std::max(scale, std::fabs(ref.get(k)));
    error = std::max(error, std::fabs(got.get(k) - ref.get(k)));
  }
  CHECK(error > 1e-6 * scale);
  CHECK(error < 5e-2 * (1 + scale));
}

TEST_CASE("a CNN compiled for AVX2 with a weights file runs here, and a damaged weights file is refused",
          "[aot]") {
  std::string dir = temp_dir("aot_cnn");
  std::string model = int4_example(dir, "cnn");
  compile(model, dir + "/lib", "--name tcnn --target x86-64-avx2 --weights-file");
  std::string weights = dir + "/lib/tcnn.weights";
  REQUIRE(fs::exists(weights));
  // AVX2 code only: no AVX-512 registers anywhere in the library.
  std::string zmm;
  run_command("objdump -d " + dir + "/lib/lib/libtcnn.a | grep -c zmm", &zmm);
  CHECK(std::stoi(zmm) == 0);

  Input image = write_input(dir, "image", {1, 3, 32, 32});
  Tensor jit = jit_output(model, dir, "image", image.pb);
  std::string program =
      build_program(source_dir() + "/examples/aot_cpp", dir + "/lib", "tcnn", dir + "/cpp", "run_model");
  std::string out;
  REQUIRE(run_command(program + " --weights " + weights + " " + image.raw, &out) == 0);
  Tensor got = printed_output(out, {1, 10});
  CHECK(compare_tensors(got, jit, 1e-5, 1e-4) == "");  // AVX2 vs AVX-512 code: fp32 sums in another order
  check_against_reference(got, model, "image", image.tensor);

  // Without the file, or with a file of other bytes: a clear error, no crash.
  REQUIRE(run_command(program + " " + image.raw, &out) == 1);
  CHECK_THAT(out, Catch::Contains("weights in a file"));
  std::string damaged = dir + "/damaged.weights";
  fs::copy_file(weights, damaged);
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(int64_t(fs::file_size(damaged)) / 2);
    f.put('\x5a');
  }
  REQUIRE(run_command(program + " --weights " + damaged + " " + image.raw, &out) == 1);
  CHECK_THAT(out, Catch::Contains("checksum"));
}

TEST_CASE("a library for several GPUs and the CPU runs on the first GPU present, else the CPU, and says why",
          "[aot][gpu]") {
  std::string dir = temp_dir("aot_gpus");
  std::string model = int4_example(dir, "cnn");
  compile(model, dir + "/lib", "--name tgpu --target opencl,hip:gfx90a,gfx1201,host");
  nlohmann::json kernels = nlohmann::json::parse(std::ifstream(dir + "/lib/tgpu.kernels.json"));
  REQUIRE(kernels.contains("host"));
  REQUIRE(kernels["gpu"].size() == 3);
  CHECK(kernels["gpu"][1]["target"] == "hip-gfx90a");
  for (const nlohmann::json& gpu : kernels["gpu"]) CHECK(gpu["launches"].get<int>() >= 8);
  std::string header;
  REQUIRE(run_command("grep GPU_TARGETS " + dir + "/lib/include/tgpu.h", &header) == 0);
  CHECK_THAT(header, Catch::Contains("\"opencl,hip-gfx90a,hip-gfx1201\""));

  // Each AMD code object is in the library, in a section of its own, valid for its arch.
  REQUIRE(run_command("cd " + dir + " && ar x lib/lib/libtgpu.a tgpu_glue.o") == 0);
  for (const std::string arch : {"gfx90a", "gfx1201"}) {
    const std::string co = dir + "/" + arch + ".co";
    REQUIRE(run_command("objcopy --dump-section .rodata.tetra_program.hip_" + arch + "=" + co + " " + dir +
                        "/tgpu_glue.o " + dir + "/scratch.o") == 0);
    std::string notes;
    REQUIRE(run_command("llvm-readelf-19 --notes " + co, &notes) == 0);
    CHECK_THAT(notes, Catch::Contains("amdgcn-amd-amdhsa--" + arch));
  }

  Input image = write_input(dir, "image", {1, 3, 32, 32});
  Tensor jit = jit_output(model, dir, "image", image.pb);
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tgpu", dir + "/c", "run_model");
  auto run_on = [&](const std::string& device, std::string* out) {
    return run_command("(" + program + " --device " + device + " " + image.raw + " 2>" + dir + "/stderr)", out);
  };
  auto stderr_text = [&] {
    std::string text;
    run_command("cat " + dir + "/stderr", &text);
    return text;
  };
  std::string out;
  REQUIRE(run_on("cpu", &out) == 0);
  CHECK_THAT(stderr_text(), Catch::Contains("device: cpu"));
  Tensor on_cpu = printed_output(out, {1, 10});
  CHECK(compare_tensors(on_cpu, jit, 1e-6, 1e-5) == "");
  check_against_reference(on_cpu, model, "image", image.tensor);

  // No AMD GPU here: HIP is never chosen, and asking for it says what was missing.
  REQUIRE(run_on("hip", &out) == 1);
  CHECK_THAT(stderr_text(), Catch::Contains("no device for 'hip'") && Catch::Contains("hip: "));
  REQUIRE(run_on("hip:gfx90a", &out) == 1);
  REQUIRE(run_on("tpu", &out) == 1);
  CHECK_THAT(stderr_text(), Catch::Contains("opencl, hip-gfx90a, hip-gfx1201"));

  // By default: the first GPU present (pocl's OpenCL device, where it runs), else the CPU with the reasons.
  REQUIRE(run_on("auto", &out) == 0);
  Tensor got = printed_output(out, {1, 10});
  if (opencl_runs_here("the library's OpenCL job")) {
    CHECK_THAT(stderr_text(), Catch::Contains("device: opencl"));
    CHECK(compare_tensors(got, on_cpu, 1e-5, 1e-4) == "");
    check_against_reference(got, model, "image", image.tensor);
    // The C API's rules hold on the GPU too: error codes, bindings, instances on concurrent threads.
    std::string api_check = build_program(source_dir() + "/tests/aot", dir + "/lib", "tgpu", dir + "/api", "api_check");
    int rc = run_command(api_check, &out);
    INFO(out);
    CHECK(rc == 0);
    CHECK_THAT(out, Catch::Contains("runs on opencl") && Catch::Contains(", 0 failed"));
  } else {
    CHECK_THAT(stderr_text(), Catch::Contains("device: cpu") && Catch::Contains("not on a GPU: opencl: "));
    CHECK(compare_tensors(got, on_cpu, 0, 0) == "");
  }
}

TEST_CASE("a library for several AMD archs runs on the device's arch through the HIP runtime, else the CPU",
          "[aot][gpu][hip]") {
  // The stand-in HIP runtime (tests/fake_gpu) runs no kernel, so the GPU's outputs are not checked here;
  // it checks each call the library makes (the code object's arch, its kernels, each copy's bounds) and
  // that nothing is left allocated or loaded.
  std::string dir = temp_dir("aot_hip");
  std::string model = int4_example(dir, "cnn");
  compile(model, dir + "/lib", "--name thip --target hip:gfx90a,gfx942,host");
  Input image = write_input(dir, "image", {1, 3, 32, 32});
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "thip", dir + "/c", "run_model");
  const std::string log = dir + "/hip.log";
  auto run_on = [&](const std::string& arch, const std::string& device, const std::string& settings, std::string* out) {
    return run_command(hip_stand_in(arch, log, settings) + program + " --device " + device + " " + image.raw, out);
  };
  std::string on_cpu;
  REQUIRE(run_on("gfx942", "cpu", "", &on_cpu) == 0);
  check_against_reference(printed_output(on_cpu, {1, 10}), model, "image", image.tensor);

  // An MI300X's target ID picks the gfx942 code object, past the gfx90a one it does not run.
  std::string out;
  REQUIRE(run_on("gfx942:sramecc+:xnack-", "auto", "", &out) == 0);
  CHECK_THAT(out, Catch::Contains("device: hip-gfx942"));
  nlohmann::json last = stand_in_reports(log).back();
  CHECK(last["launches"].get<int>() >= 8);
  // The C API's rules on the HIP device: error codes, device memory in and out, concurrent instances.
  std::string api_check = build_program(source_dir() + "/tests/aot", dir + "/lib", "thip", dir + "/api", "api_check");
  int rc = run_command(hip_stand_in("gfx942:sramecc+:xnack-", log) + api_check, &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("runs on hip-gfx942") && Catch::Contains(", 0 failed"));

  // A device whose arch the library has no code for: the CPU, saying why, with the CPU's answer.
  REQUIRE(run_on("gfx1100", "auto", "", &out) == 0);
  CHECK_THAT(out, Catch::Contains("device: cpu") &&
                      Catch::Contains("hip-gfx942: the device is Stand-in AMD GPU (gfx1100, 304 CUs"));
  CHECK(compare_tensors(printed_output(out, {1, 10}), printed_output(on_cpu, {1, 10}), 0, 0) == "");
  CHECK(run_on("gfx1100", "hip", "", &out) == 1);
  CHECK_THAT(out, Catch::Contains("no device for 'hip'"));

  // A device fault is an error code with the runtime's words, not an abort.
  CHECK(run_on("gfx90a", "hip:gfx90a", "TETRA_FAKE_HIP_FAIL_LAUNCH=2", &out) == 1);
  CHECK_THAT(out, Catch::Contains("unspecified launch failure (719)"));
  check_stand_in_reports(log);
}

TEST_CASE("a library for NVIDIA runs through the CUDA driver, from any thread, else the CPU", "[aot][gpu][cuda]") {
  // The stand-in CUDA driver (tests/fake_gpu) runs no kernel; it checks each call, the context current
  // on the calling thread included: the driver's contexts are per thread.
  std::string dir = temp_dir("aot_cuda");
  std::string model = int4_example(dir, "cnn");
  compile(model, dir + "/lib", "--name tcuda --target cuda:sm_80,host");
  Input image = write_input(dir, "image", {1, 3, 32, 32});
  std::string program = build_program(source_dir() + "/examples/aot_c", dir + "/lib", "tcuda", dir + "/c", "run_model");
  const std::string log = dir + "/cuda.log";
  std::string out;
  // PTX for sm_80 runs on sm_90, not on sm_75, where the library says why and runs on the CPU.
  REQUIRE(run_command(cuda_stand_in(90, log) + program + " " + image.raw, &out) == 0);
  CHECK_THAT(out, Catch::Contains("device: cuda-sm80"));
  REQUIRE(run_command(cuda_stand_in(75, log) + program + " " + image.raw, &out) == 0);
  CHECK_THAT(out, Catch::Contains("device: cpu") &&
                      Catch::Contains("cuda-sm80: the device is Stand-in NVIDIA GPU (sm_75, 132 SMs"));
  check_against_reference(printed_output(out, {1, 10}), model, "image", image.tensor);
  // The C API's rules on the CUDA device: device memory, concurrent instances, one instance shared by
  // threads other than the one that made it.
  std::string api_check = build_program(source_dir() + "/tests/aot", dir + "/lib", "tcuda", dir + "/api", "api_check");
  int rc = run_command(cuda_stand_in(90, log) + api_check, &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("runs on cuda-sm80") && Catch::Contains(", 0 failed"));
  CHECK(run_command(cuda_stand_in(90, log, "TETRA_FAKE_CUDA_FAIL_LAUNCH=2") + program + " " + image.raw, &out) == 1);
  CHECK_THAT(out, Catch::Contains("CUDA_ERROR_LAUNCH_FAILED (719)"));
  check_stand_in_reports(log);
}

TEST_CASE("a library's GPU instance agrees with its CPU instance, float16 values and int64 indices included",
          "[aot][gpu]") {
  if (!opencl_runs_here("the library's OpenCL job")) return;
  std::string dir = temp_dir("aot_gpu_half");
  const uint32_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  auto half = [&](const Shape& shape, float lo, float hi) {
    Tensor t(DType::Float16, shape);
    std::uniform_real_distribution<float> u(lo, hi);
    for (int64_t i = 0; i < t.size(); ++i) t.set(i, half_to_float(float_to_half(u(gen))));
    return t;
  };
  ModelBuilder b(17, "half");
  b.input("x", DType::Float16, {4, 32});
  b.output("probs", DType::Float16);
  b.initializer("w", half({32, 16}, -0.3f, 0.3f));
  b.initializer("bias", half({16}, -0.5f, 0.5f));
  b.node("MatMul", {"x", "w"}, {"h"});
  b.node("Add", {"h", "bias"}, {"hb"});
  b.node("Sigmoid", {"hb"}, {"s"});
  b.node("Softmax", {"s"}, {"probs"}, {{"axis", int64_t(-1)}});
  // Token ids as a transformer takes them: int64, narrowed to int32 on the way to the device.
  b.input("ids", DType::Int64, {2, 3});
  b.output("picked", DType::Float16);
  b.initializer("emb", half({8, 16}, -2.0f, 2.0f));
  b.node("Gather", {"emb", "ids"}, {"rows"});
  b.node("Sigmoid", {"rows"}, {"picked"});
  std::string model = b.save(dir + "/half.onnx");
  compile(model, dir + "/lib", "--name thalf --target opencl,host");
  std::string check = build_program(source_dir() + "/tests/aot", dir + "/lib", "thalf", dir + "/api", "device_check");
  std::string out;
  int rc = run_command(check + " 2e-3", &out);  // float16 outputs: a few of its ulps
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("device_check: opencl"));
}

TEST_CASE("tetra compile refuses what it cannot build, naming the cause, and writes nothing", "[aot][errors]") {
  std::string dir = temp_dir("aot_errors");
  std::string model = int4_example(dir, "mlp");
  struct Case {
    std::string args, message;
  };
  for (const Case& c :
       {Case{"--name m", "--shape x="},  // the batch dim is dynamic
        Case{"--name m --shape x=2,64 --target arm-64-linux", "x86-64"},
        Case{"--name 2bad --shape x=2,64", "C identifier"}, Case{"--name m --shape x=2,64 --target sparc", "target"},
        Case{"--name m --shape x=2,64 --target opencl", "opencl,host"},
        Case{"--name m --shape x=2,64 --target hip:gfx90a,gfx90a,host", "named twice"},
        Case{"--name m --shape x=2,64 --target opencl,host --weights-file", "--weights-file"}}) {
    std::string out;
    CHECK(run_command(tetra_cli() + " compile " + model + " -o " + dir + "/out " + c.args, &out) == 2);
    CHECK_THAT(out, Catch::Contains(c.message));
    CHECK((!fs::exists(dir + "/out") || fs::is_empty(dir + "/out")));
  }
}

TEST_CASE("the graph serialises losslessly, and damaged bytes are an error, never a crash", "[aot]") {
  std::string dir = temp_dir("graph_io");
  std::string model = int4_example(dir, "cnn");
  Graph graph = load_model(model);
  std::vector<uint8_t> bytes = serialize_graph(graph);
  Graph back = deserialize_graph(bytes.data(), bytes.size(), "test");
  CHECK(serialize_graph(back) == bytes);
  Tensor image = random_tensor(DType::Float32, {1, 3, 32, 32});
  Tensor a = run_reference(graph, {{"image", image}}).at("probs");
  Tensor b = run_reference(back, {{"image", image}}).at("probs");
  CHECK(compare_tensors(b, a, 0, 0) == "");

  // Every truncation, and bytes flipped across the blob.
  for (size_t cut = 0; cut < bytes.size(); cut += std::max<size_t>(1, bytes.size() / 2000))
    CHECK_THROWS_AS(deserialize_graph(bytes.data(), cut, "test"), Error);
  for (size_t at = 8; at < std::min<size_t>(bytes.size(), 4000); at += 7) {
    std::vector<uint8_t> damaged = bytes;
    damaged[at] ^= 0xA5;
    try {
      deserialize_graph(damaged.data(), damaged.size(), "test");  // may still parse: a value changed
    } catch (const Error&) {
    }
  }
}
