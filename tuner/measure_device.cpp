#include "tuner/measure_device.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "dsl/core/kernel_calls.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"
#include "dsl/process.h"
#include "importer/dtype.h"
#include "importer/error.h"
#include "schedules/gpu/build.h"
#include "tuner/random_weights.h"
#include "tuner/reference_values.h"

namespace tetra::tuner {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

MeasureResult failed(const std::string& why) {
  MeasureResult r;
  r.error = why;
  return r;
}

// tetra-device's last line of output: its JSON answer.
std::string last_line(const std::string& text) {
  std::string line, last;
  for (std::istringstream lines(text); std::getline(lines, line);)
    if (!line.empty()) last = line;
  return last;
}

// tetra-device's error on one line, for a record: "qmatmul: 1 of 256 outputs differ; qmatmul[7] = ...".
std::string device_error(const dsl::ProgramRun& run) {
  std::string out, line;
  for (std::istringstream lines(run.output); std::getline(lines, line);) {
    line = line.substr(std::min(line.find_first_not_of(' '), line.size()));
    if (line.rfind("tetra-device: ", 0) == 0) line = line.substr(14);
    if (!line.empty()) out += (out.empty() ? "" : "; ") + line;
  }
  if (run.status > 128)
    return "tetra-device was killed by signal " + std::to_string(run.status - 128) + (out.empty() ? "" : ": " + out);
  return out.empty() ? "tetra-device exited with status " + std::to_string(run.status) : out;
}

// The "device-hang" fault: each kernel spins first, forever (a volatile flag, which no compiler may
// fold away), so that only the worker's timeout ends the candidate.
std::string spin_forever(std::string source) {
  for (size_t at = source.find("__kernel"); at != std::string::npos; at = source.find("__kernel", at + 1)) {
    size_t body = source.find('{', at);
    if (body == std::string::npos) break;
    source.insert(body + 1, " volatile int tetra_spin = 1; while (tetra_spin) {} ");
  }
  return source;
}

constexpr const char* kJobPrefix = "tetra_device_job_";

// What the timed runs of a GEMM rotate its weight through: over MI300X's 256 MiB Infinity Cache, the
// largest last-level cache of the GPUs tetra targets.
constexpr int64_t kColdBytes = int64_t(512) << 20;

// The job folders of workers that were killed (a timeout) before they could remove them: those named
// after a process that no longer exists.
void remove_stale_job_folders() {
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kJobPrefix, 0) != 0) continue;
    const std::string pid = name.substr(std::string(kJobPrefix).size(), name.find('_', std::string(kJobPrefix).size()) -
                                                                            std::string(kJobPrefix).size());
    if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos && !fs::exists("/proc/" + pid))
      fs::remove_all(e.path(), ec);
  }
}

// A folder of its own for one candidate's job, removed with it.
struct JobFolder {
  fs::path path;
  JobFolder() {
    static int count = 0;
    if (count == 0) remove_stale_job_folders();
    path = fs::temp_directory_path() / (kJobPrefix + std::to_string(::getpid()) + "_" + std::to_string(count++));
    fs::create_directories(path);
  }
  ~JobFolder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(bytes));
  check(bool(out), ErrorKind::Io, "cannot write " + path.string());
}

// A job's entry for a buffer (dense, or strided as a padded weight is), its bytes in DIR/NAME.bin.
nlohmann::json buffer_entry(const fs::path& dir, const std::string& name, const halide_buffer_t& b) {
  int64_t bytes = 0;
  dsl::Result<nlohmann::json> entry = dsl::gpu::job_buffer_entry(name, b, &bytes);
  check(entry.ok(), ErrorKind::Invalid, entry.ok() ? "" : entry.failure().describe());
  write_file(dir / (name + ".bin"), b.host, size_t(bytes));
  nlohmann::json e = entry.value();
  e["file"] = name + ".bin";
  return e;
}

nlohmann::json floats_entry(const fs::path& dir, const std::string& name, const std::vector<float>& values,
                            std::vector<int64_t> extents) {
  write_file(dir / (name + ".bin"), values.data(), values.size() * sizeof(float));
  return {{"type", "f32"}, {"extents", extents}, {"file", name + ".bin"}};
}

std::vector<float> random_floats(size_t count, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = uni(rng);
  return v;
}

// The output's check: at the sampled outputs the reference within its tolerance, elsewhere any number;
// the output starts as NaN, so an element the kernels never wrote fails wherever it is.
template <class Reference>
nlohmann::json output_check(const fs::path& dir, const std::string& output, int64_t count, std::mt19937& rng,
                            const Reference& reference_at, const std::string& fault) {
  std::vector<float> want(size_t(count), 0.0f), tolerance(size_t(count), INFINITY);
  std::vector<int64_t> picks = checked_outputs(count, 4096, 512, rng);
  for (int64_t i : picks) {
    ReferenceValue r = reference_at(i);
    want[size_t(i)] = float(r.value);
    tolerance[size_t(i)] = float(r.tolerance());
  }
  if (fault == "wrong") want[size_t(picks[picks.size() / 2])] += 1.0f;
  write_file(dir / "expect.bin", want.data(), want.size() * sizeof(float));
  write_file(dir / "tolerance.bin", tolerance.data(), tolerance.size() * sizeof(float));
  std::vector<float> unwritten(size_t(count), NAN);
  write_file(dir / "initial.bin", unwritten.data(), unwritten.size() * sizeof(float));
  return {{"buffer", output}, {"expect", "expect.bin"}, {"tolerance", "tolerance.bin"}};
}

// The kernels' program in the target's dialect, in DIR: OpenCL C, PTX or an AMD code object.
dsl::Result<std::string> write_program(const schedules::GpuKernels& lowered, const dsl::TargetSpec& target,
                                       const fs::path& dir, const std::string& fault, std::string* dialect) {
  const dsl::gpu::Dialect d = dsl::gpu::dialect_of(target.family);
  *dialect = dsl::gpu::dialect_name(d);
  return dsl::gpu::write_device_program(lowered.kernels, d, target.gpu_arch, dir.string(),
                                        fault == "device-hang" && d == dsl::gpu::Dialect::OpenCL
                                            ? std::function<std::string(const std::string&)>(spin_forever)
                                            : nullptr);
}

// The name of the buffer the kernels write last: the output.
std::string output_of(const schedules::GpuKernels& lowered) {
  std::string output;
  for (const dsl::LaunchPlan& plan : lowered.launches)
    for (const dsl::KernelParam& p : plan.params)
      if (p.is_buffer && p.write) output = p.name;
  return output;
}

// The buffers, scalars and check of a QMatMul candidate; the bytes one run moves.
int64_t qmatmul_inputs(const MeasureJob& job, const dsl::QMatMulWorkload& wl, const std::string& output,
                       const fs::path& dir, std::mt19937& rng, const std::string& fault, nlohmann::json& j) {
  dsl::Result<QuantizedWeight> weight = random_qmatmul_weight(wl, rng);
  check(weight.ok(), ErrorKind::Invalid, weight.ok() ? "" : weight.failure().describe());
  dsl::Result<dsl::PackedInt4Buffers> packed =
      dsl::pack_int4_weight(weight.value(), /*trans_b=*/false, schedules::layout_of(job.schedule));
  check(packed.ok(), ErrorKind::Invalid, packed.ok() ? "" : packed.failure().describe());
  const dsl::PackedInt4Buffers& p = packed.value();
  std::vector<float> a = random_floats(size_t(wl.M * wl.K), rng), bias = random_floats(size_t(wl.N), rng);
  if (wl.f16_activations)  // A holds float16 values, as in the float16 model the workload came from
    for (float& x : a) x = half_to_float(float_to_half(x));
  j["buffers"]["A"] = floats_entry(dir, "A", a, {wl.K, wl.M});
  if (wl.has_bias) j["buffers"]["bias"] = floats_entry(dir, "bias", bias, {wl.N});
  j["buffers"]["W_packed"] = buffer_entry(dir, "W_packed", *p.packed.raw_buffer());
  if (p.scale.data()) j["buffers"]["W_scale"] = buffer_entry(dir, "W_scale", *p.scale.raw_buffer());
  if (p.zero.data()) j["buffers"]["W_zero"] = buffer_entry(dir, "W_zero", *p.zero.raw_buffer());
  j["buffers"][output] = {{"type", "f32"}, {"extents", {wl.N, wl.M}}, {"file", "initial.bin"}};
  j["scalars"] = {{"alpha", 1.0}, {"beta", 1.0}};
  j["check"] = {output_check(
      dir, output, wl.M * wl.N, rng,
      [&](int64_t i) {
        return qmatmul_reference(wl, weight.value(), a.data(), bias.data(), nullptr, i / wl.N, i % wl.N);
      },
      fault)};
  return p.bytes() + 4 * (wl.M * wl.K + wl.M * wl.N);
}

// The same for a direct conv candidate.
int64_t qconv_inputs(const dsl::QConvWorkload& wl, const std::string& output, const fs::path& dir, std::mt19937& rng,
                     const std::string& fault, nlohmann::json& j) {
  dsl::Result<QuantizedWeight> weight = random_qconv_weight(wl, rng);
  check(weight.ok(), ErrorKind::Invalid, weight.ok() ? "" : weight.failure().describe());
  dsl::Result<dsl::ConvInt4Buffers> packed = dsl::pack_conv_weight(weight.value());
  check(packed.ok(), ErrorKind::Invalid, packed.ok() ? "" : packed.failure().describe());
  const dsl::ConvInt4Buffers& p = packed.value();
  std::vector<float> x = random_floats(size_t(wl.W * wl.H * wl.C * wl.N), rng), bias = random_floats(size_t(wl.M), rng);
  j["buffers"]["X"] = floats_entry(dir, "X", x, {wl.W, wl.H, wl.C, wl.N});
  if (wl.has_bias) j["buffers"]["bias"] = floats_entry(dir, "bias", bias, {wl.M});
  j["buffers"]["W_packed"] = buffer_entry(dir, "W_packed", *p.packed.raw_buffer());
  if (p.scale.data()) j["buffers"]["W_scale"] = buffer_entry(dir, "W_scale", *p.scale.raw_buffer());
  if (p.zero.data()) j["buffers"]["W_zero"] = buffer_entry(dir, "W_zero", *p.zero.raw_buffer());
  j["buffers"][output] = {{"type", "f32"}, {"extents", {wl.OW, wl.OH, wl.M, wl.N}}, {"file", "initial.bin"}};
  j["scalars"] = nlohmann::json::object();
  for (const auto& [name, value] : dsl::qconv_int_arguments(wl, p.block)) j["scalars"][name] = value;
  const int64_t outputs = wl.OW * wl.OH * wl.M * wl.N;
  j["check"] = {output_check(
      dir, output, outputs, rng,
      [&](int64_t i) {
        return qconv_reference(wl, weight.value(), x.data(), bias.data(), i / (wl.OW * wl.OH * wl.M),
                               i / (wl.OW * wl.OH) % wl.M, i / wl.OW % wl.OH, i % wl.OW);
      },
      fault)};
  return int64_t(p.packed.size_in_bytes()) + 4 * (int64_t(x.size()) + outputs);
}

}  // namespace

MeasureResult measure_on_device(const MeasureJob& job, const dsl::TargetSpec& target, const std::string& fault) {
  if (job.device_program.empty()) return failed("no device program (tetra-device) given for " + target.name);
  if (job.qconv && !job.qconv->epilogue.empty())
    return failed("a conv is measured without its epilogue, not with " + job.qconv->epilogue.describe());
  if (job.qmatmul && job.qmatmul->int8_activations)
    return failed("GPU tuning measures float32 and float16 activations, not int8 ones");
  if (job.qmatmul && !(job.qmatmul->epilogue.empty() || job.qmatmul->epilogue.is_lone_relu()))
    return failed("a matmul is measured with no epilogue or a lone Relu, not with " + job.qmatmul->epilogue.describe());
  auto start = Clock::now();
  dsl::Result<schedules::GpuKernels> lowered =
      job.qconv     ? schedules::lower_gpu_qconv(*job.qconv, job.schedule, target, "candidate")
      : job.qmatmul ? schedules::lower_gpu_qmatmul(*job.qmatmul, job.schedule, target, "candidate")
                    : dsl::Result<schedules::GpuKernels>(dsl::Failure{dsl::FailureKind::BadJson, "job", "no workload"});
  if (!lowered) return failed(lowered.failure().describe());
  const std::string output = output_of(lowered.value());
  if (output.empty()) return failed("the candidate's kernels write no buffer");

  JobFolder folder;
  std::string dialect;
  dsl::Result<std::string> program = write_program(lowered.value(), target, folder.path, fault, &dialect);
  if (!program) return failed(program.failure().describe());
  nlohmann::json j = {{"dialect", dialect}, {"source", program.value()}, {"kernels", nlohmann::json::array()}};
  for (const dsl::LaunchPlan& plan : lowered.value().launches) j["kernels"].push_back(plan.to_json());
  std::mt19937 rng(std::random_device{}());
  try {
    const int64_t bytes = job.qconv ? qconv_inputs(*job.qconv, output, folder.path, rng, fault, j)
                                    : qmatmul_inputs(job, *job.qmatmul, output, folder.path, rng, fault, j);
    j["timing"] = {{"runs", job.repeats}, {"bytes", bytes}};
    // A GEMM streams its weight, which a decoding model reads cold (every other layer's passed through the
    // caches since): the runs read copies of it that together pass every GPU's last-level cache.
    if (job.qmatmul) {
      nlohmann::json weights = nlohmann::json::array();
      for (const char* name : {"W_packed", "W_scale", "W_zero"})
        if (j["buffers"].contains(name)) weights.push_back(name);
      j["timing"]["rotate"] = {{"buffers", weights}, {"bytes", kColdBytes}};
    }
    std::ofstream file(folder.path / "job.json");
    file << j.dump(1);
    check(bool(file), ErrorKind::Io, "cannot write the device job in " + folder.path.string());
  } catch (const Error& e) {
    return failed(e.what());
  }
  MeasureResult result;
  result.compile_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();

  dsl::ProgramRun run = dsl::run_program({job.device_program, "run", (folder.path / "job.json").string()});
  if (!run.ok()) return failed(device_error(run));
  const std::string answer = last_line(run.output);
  nlohmann::json out = nlohmann::json::parse(answer, nullptr, false);
  auto number = [&](const char* key) {
    return out.is_object() && out.contains("timing") && out["timing"].contains(key) && out["timing"][key].is_number();
  };
  if (!number("median_ms") || !number("min_ms") || !number("max_ms"))
    return failed("tetra-device answered no timing: " + answer);
  result.ok = true;
  // Per run, over batches of runs back to back (one launch alone is below the timers' resolution).
  result.median_ms = out["timing"]["median_ms"].get<double>();
  result.min_ms = out["timing"]["min_ms"].get<double>();
  result.max_ms = out["timing"]["max_ms"].get<double>();
  result.runs = job.repeats;
  return result;
}

}  // namespace tetra::tuner
