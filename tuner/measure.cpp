#include "tuner/measure.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <optional>
#include <random>
#include <thread>

#include "dsl/core/json_reader.h"
#include "dsl/workload_json.h"
#include "runtime/jit_kernel_source.h"
#include "schedules/cpu/conv.h"
#include "schedules/qmatmul_kernel.h"
#include "schedules/qmatmul_templates.h"
#include "tuner/measure_device.h"
#include "tuner/random_weights.h"
#include "tuner/reference_values.h"

extern char** environ;

namespace tetra::tuner {

using Clock = std::chrono::steady_clock;

nlohmann::json MeasureJob::to_json() const {
  nlohmann::json workload = qmatmul ? dsl::qmatmul_workload_to_json(*qmatmul)
                            : qconv ? dsl::qconv_workload_to_json(*qconv)
                                    : nlohmann::json();
  return {{"workload", workload},         {"target", target},         {"schedule", schedule.to_json()},
          {"repeats", repeats},           {"warmup", warmup},         {"threads", threads},
          {"kernel_cache", kernel_cache}, {"build_only", build_only}, {"device_program", device_program}};
}

dsl::Result<MeasureJob> MeasureJob::from_json(const nlohmann::json& j) {
  dsl::JsonReader r(j, "measure job");
  MeasureJob job;
  const nlohmann::json* workload = r.field("workload");
  const nlohmann::json* schedule = r.field("schedule");
  job.target = r.text("target");
  job.repeats = int(r.integer("repeats", 1, 1000000));
  job.warmup = int(r.integer("warmup", 0, 1000000));
  job.threads = int(r.integer("threads", 0, 4096));
  job.kernel_cache = r.text("kernel_cache");
  job.build_only = r.flag("build_only");
  if (j.is_object() && j.contains("device_program")) job.device_program = r.text("device_program");
  if (!r.ok()) return r.failure();
  dsl::JsonReader op(*workload, "workload");
  if (op.choice("op", {"qmatmul", "qconv"}) == 1) {
    dsl::Result<dsl::QConvWorkload> conv = dsl::qconv_workload_from_json(*workload);
    if (!conv) return conv.failure();
    job.qconv = conv.value();
  } else {
    if (!op.ok()) return op.failure();
    dsl::Result<dsl::QMatMulWorkload> gemm = dsl::qmatmul_workload_from_json(*workload);
    if (!gemm) return gemm.failure();
    job.qmatmul = gemm.value();
  }
  dsl::Result<dsl::Schedule> parsed = dsl::Schedule::from_json(*schedule);
  if (!parsed) return parsed.failure();
  job.schedule = parsed.value();
  return job;
}

nlohmann::json MeasureResult::to_json() const {
  return {{"ok", ok},         {"error", error},   {"median_ms", median_ms}, {"min_ms", min_ms},
          {"max_ms", max_ms}, {"runs", runs},     {"compile_ms", compile_ms}};
}

MeasureResult MeasureResult::from_json(const nlohmann::json& j) {
  MeasureResult r;
  r.ok = j.at("ok").get<bool>();
  r.error = j.value("error", "");
  r.median_ms = j.value("median_ms", 0.0);
  r.min_ms = j.value("min_ms", 0.0);
  r.max_ms = j.value("max_ms", 0.0);
  r.runs = j.value("runs", 0);
  r.compile_ms = j.value("compile_ms", 0.0);
  return r;
}

namespace {
constexpr const char* kResultPrefix = "tetra-measure-result: ";
}  // namespace

std::string worker_result_line(const MeasureResult& result) {
  return kResultPrefix + result.to_json().dump() + "\n";
}

std::optional<MeasureResult> parse_worker_output(const std::string& output) {
  const std::string prefix = kResultPrefix;
  // The start of the last line that begins with the prefix.
  size_t at = output.rfind("\n" + prefix);
  if (at != std::string::npos) at += 1;
  else if (output.compare(0, prefix.size(), prefix) == 0) at = 0;
  else return std::nullopt;
  size_t begin = at + prefix.size();
  std::string line = output.substr(begin, output.find('\n', begin) - begin);  // to the end without a newline
  try {
    return MeasureResult::from_json(nlohmann::json::parse(line));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

namespace {

MeasureResult failed(const std::string& why) {
  MeasureResult r;
  r.error = why;
  return r;
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Checks Y against the reference at up to 512 sampled positions (all of them when Y is small). Y was
// filled with NaN first, so an unwritten element fails.
std::string check_output(const dsl::QMatMulWorkload& wl, const QuantizedWeight& w, const std::vector<float>& a,
                         const std::vector<float>& bias, const std::vector<float>& y, std::mt19937& rng) {
  // int8 activations: against the same quantization of A, so a wrong schedule still shows.
  std::optional<dsl::Int8ActivationReference> int8;
  if (wl.int8_activations) int8.emplace(a.data(), wl.M, wl.K, wl.activation_block());
  for (int64_t idx : checked_outputs(wl.M * wl.N, 512, 512, rng)) {
    int64_t m = idx / wl.N, n = idx % wl.N;
    ReferenceValue want = qmatmul_reference(wl, w, a.data(), bias.data(), int8 ? &*int8 : nullptr, m, n);
    if (!want.accepts(y[idx]))
      return "wrong result at (" + std::to_string(m) + ", " + std::to_string(n) + "): " + std::to_string(y[idx]) +
             " instead of " + std::to_string(want.value);
  }
  return "";
}

// Times `times` runs of `run` after `warmup` ones into `result`.
template <class Run>
void time_runs(const MeasureJob& job, const Run& run, MeasureResult& result) {
  for (int i = 0; i < job.warmup; ++i) run(i);
  std::vector<double> times;
  for (int i = 0; i < std::max(1, job.repeats); ++i) {
    auto t = Clock::now();
    run(i);
    times.push_back(ms_since(t));
  }
  std::sort(times.begin(), times.end());
  result.ok = true;
  result.median_ms = times[times.size() / 2];
  result.min_ms = times.front();
  result.max_ms = times.back();
  result.runs = static_cast<int>(times.size());
}

// A direct conv candidate: compiled, checked against double-precision sums over the dequantized weight
// on fresh random data (every output up to 65536 of them, else 4096 sampled), then timed (the weights
// are small: no copies).
MeasureResult measure_conv(const MeasureJob& job, const dsl::QConvWorkload& wl, const dsl::TargetSpec& target,
                           const std::string& fault) {
  // Tuning keys leave the epilogue out (it does not change the best tiling), so the check has none.
  if (!wl.epilogue.empty()) return failed("a conv is measured without its epilogue, not with " + wl.epilogue.describe());
  auto start = Clock::now();
  auto kernel = schedules::compile_qconv(wl, job.schedule, target, job.kernel_cache);
  if (!kernel.ok()) return failed(kernel.failure().describe());
  MeasureResult result;
  if (job.build_only) {
    result.ok = true;
    result.compile_ms = ms_since(start);
    return result;
  }
  result.compile_ms = ms_since(start);

  std::mt19937 rng(std::random_device{}());
  dsl::Result<QuantizedWeight> random = random_qconv_weight(wl, rng);
  if (!random) return failed(random.failure().describe());
  const QuantizedWeight& w = random.value();
  auto weight = dsl::pack_conv_weight(w);
  if (!weight.ok()) return failed(weight.failure().describe());
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  Halide::Buffer<float> X(int(wl.W), int(wl.H), int(wl.C), int(wl.N)), B(int(wl.M));
  Halide::Buffer<float> Y(int(wl.OW), int(wl.OH), int(wl.M), int(wl.N));
  X.for_each_value([&](float& v) { v = uni(rng); });
  B.for_each_value([&](float& v) { v = uni(rng); });
  Y.fill(NAN);
  const Halide::Buffer<float>* bias = wl.has_bias ? &B : nullptr;
  dsl::Status st = kernel.value().run(wl, X, weight.value(), Y, bias);
  if (!st.ok()) return failed(st.failure().describe());
  if (fault == "wrong") Y(int(wl.OW) / 2, int(wl.OH) / 2, int(wl.M) / 2, 0) += 1.0f;

  for (int64_t idx : checked_outputs(wl.N * wl.M * wl.OH * wl.OW, 65536, 4096, rng)) {
    int64_t ow = idx % wl.OW, oh = idx / wl.OW % wl.OH, m = idx / (wl.OW * wl.OH) % wl.M, n = idx / (wl.OW * wl.OH * wl.M);
    ReferenceValue want = qconv_reference(wl, w, X.data(), B.data(), n, m, oh, ow);
    double got = Y(int(ow), int(oh), int(m), int(n));
    if (!want.accepts(got))
      return failed("wrong result at (n " + std::to_string(n) + ", m " + std::to_string(m) + ", oh " +
                    std::to_string(oh) + ", ow " + std::to_string(ow) + "): " + std::to_string(got) + " instead of " +
                    std::to_string(want.value));
  }
  time_runs(job, [&](int) { (void)kernel.value().run(wl, X, weight.value(), Y, bias); }, result);
  return result;
}

}  // namespace

MeasureResult measure_here(const MeasureJob& job, const std::string& fault) {
  if (fault == "crash") std::raise(SIGSEGV);
  if (fault == "hang") std::this_thread::sleep_for(std::chrono::hours(1));
  set_halide_threads(job.threads);
  // A GPU candidate runs on its device, through tetra-device.
  if (auto gpu = dsl::parse_target(job.target); gpu && !gpu.value().is_cpu())
    return measure_on_device(job, gpu.value(), fault);
  auto target = dsl::parse_runnable_target(job.target.empty() ? "host" : job.target);
  if (!target) return failed(target.failure().describe());
  if (job.qconv) return measure_conv(job, *job.qconv, target.value(), fault);
  if (!job.qmatmul) return failed("the job holds no workload");
  const dsl::QMatMulWorkload wl = schedules::resolve_qmatmul(*job.qmatmul, target.value()).workload;
  // Tuning keys name a lone Relu only (QMatMulWorkload::for_tuning), so the check knows no other epilogue.
  if (!(wl.epilogue.empty() || wl.epilogue.is_lone_relu()))
    return failed("a matmul is measured with no epilogue or a lone Relu, not with " + wl.epilogue.describe());

  auto start = Clock::now();
  auto kernel = schedules::compile_qmatmul(wl, job.schedule, target.value(), job.kernel_cache);
  if (!kernel.ok()) return failed(kernel.failure().describe());
  if (job.build_only) {
    MeasureResult built;
    built.ok = true;
    built.compile_ms = ms_since(start);
    return built;
  }
  MeasureResult result;
  result.compile_ms = ms_since(start);

  // Fresh random weights and inputs (never zeros), a sentinel-filled output.
  std::mt19937 rng(std::random_device{}());
  dsl::Result<QuantizedWeight> weight = random_qmatmul_weight(wl, rng);
  if (!weight) return failed(weight.failure().describe());
  auto packed = kernel.value().pack(weight.value(), /*trans_b=*/false);
  if (!packed.ok()) return failed(packed.failure().describe());
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> a(wl.M * wl.K), bias(wl.N), y(wl.M * wl.N, NAN);
  for (float& v : a) v = uni(rng);
  for (float& v : bias) v = uni(rng);
  Halide::Buffer<float> A(a.data(), static_cast<int>(wl.K), static_cast<int>(wl.M));
  Halide::Buffer<float> Y(y.data(), static_cast<int>(wl.N), static_cast<int>(wl.M));
  Halide::Buffer<float> B(bias.data(), static_cast<int>(wl.N));
  schedules::QMatMulArgs args;
  if (wl.has_bias) args.bias = &B;
  dsl::Status st = kernel.value().run(A, packed.value(), Y, args);
  if (!st.ok()) return failed(st.failure().describe());
  if (fault == "wrong") y[y.size() / 2] += 1.0f;
  if (std::string wrong = check_output(wl, weight.value(), a, bias, y, rng); !wrong.empty()) return failed(wrong);

  // Memory-bound kernels are timed over enough copies of the weight to fall out of the caches.
  std::vector<dsl::PackedInt4Buffers> copies = {packed.value()};
  int64_t bytes = packed.value().bytes();
  while (bytes * static_cast<int64_t>(copies.size()) < (int64_t(96) << 20) && copies.size() < 16)
    copies.push_back(kernel.value().pack(weight.value(), /*trans_b=*/false).value());
  time_runs(job, [&](int i) { (void)kernel.value().run(A, copies[i % copies.size()], Y, args); }, result);
  return result;
}

MeasureResult measure_isolated(const MeasureJob& job, const std::string& worker, double timeout_s) {
  int out[2];
  if (pipe(out) != 0) return failed("cannot create a pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  std::string job_text = job.to_json().dump();
  std::vector<char*> argv = {const_cast<char*>(worker.c_str()), const_cast<char*>("tune-worker"),
                             const_cast<char*>(job_text.c_str()), nullptr};
  // The worker leads a process group of its own, so that a timeout also kills what it started (the
  // tetra-device of a GPU candidate).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, worker.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return failed("cannot start the worker '" + worker + "'");
  }
  std::string text;
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  bool timed_out = false;
  while (true) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    char buffer[4096];
    ssize_t n = read(out[0], buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, n);
  }
  close(out[0]);
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) return failed("timed out after " + std::to_string(static_cast<int>(timeout_s)) + " s");
  if (WIFSIGNALED(status)) return failed("the worker crashed (signal " + std::to_string(WTERMSIG(status)) + ")");
  if (std::optional<MeasureResult> result = parse_worker_output(text)) return *result;
  return failed("the worker exited with status " + std::to_string(WEXITSTATUS(status)) + " and no result");
}

}  // namespace tetra::tuner
