// tetra-device: runs GPU kernels on a device (runtime/gpu/device.h) in a process that never loads
// libHalide (pocl's LLVM and libHalide's cannot share one), so it also runs on a GPU machine that has
// nothing of tetra but this binary. tetra's GPU tests and scripts/gpu-check.sh hand it jobs:
//
//   tetra-device info [--dialect D]  the device of dialect D (opencl, the default, cuda or hip) as
//                                    {"device": name, "dialect": D, "arch": sm_NN, a gfx target ID or ""},
//                                    or why there is none (exit 2)
//   tetra-device run JOB.json        builds the job's source and runs its kernels in order
//   tetra-device check BUNDLE        runs every job of a bundle (BUNDLE/bundle.json: {"dialect": D,
//                                    "copy_bytes": B, "jobs": [folder, ...]}, each folder holding a
//                                    job.json), after timing a device-to-device copy of B bytes; prints a
//                                    table, writes BUNDLE/results.json, exits 0 when every check passed
//
// JOB.json: {"dialect": "opencl" | "cuda" | "hip",
//            "source": FILE (OpenCL C, PTX, or an AMD code object)
//                      | {ARCH: FILE, ...} (hip: a code object per arch, "gfx942"; the device's arch
//                                           picks one by the part of its target ID before ':'),
//            "kernels": [launch plan, ...] (dsl/core/launch_plan.h),
//            "buffers": {NAME: {"type": "f32", "extents": [innermost first], "strides": [...] (optional),
//                               "file": IN | "fill": {"seed": S, "lo": L, "hi": H}, "output": OUT}
//                              | {"type", "extents", "strides", "alias": BUFFER}},   (a view: a kernel
//                                                                     binding BUFFER reads NAME's fields)
//            "scalars": {NAME: number},               (a float goes to the kernel as float32)
//            "check": [{"buffer": NAME, "expect": FILE, "tolerance": FILE}],   (optional; float32 each)
//            "timing": {"runs": R, "bytes": B,        (optional: R more runs, timed; B bytes moved a run)
//                       "rotate": {"buffers": [NAME, ...], "bytes": C}},   (optional: the runs read copies of
//                                  these buffers in turn, enough sets to hold C bytes, at most 256; the last
//                                  set is checked too)
//            "title": TEXT,                           (optional: the job's line in check's table)
//            "model": {"inputs": {NAME: BUFFER, ...}, "outputs": {NAME: BUFFER, ...}}}   (optional: the buffers
//                      of a model's inputs and outputs, by the graph's names; model libraries bind them)
// Files are relative to the job's folder. Buffers have mins of 0 and are dense unless "strides" (in
// elements) says otherwise: their fields ("A.extent.0", "A.stride.1", "A.min.0") and the scalars are the
// launch's inputs. A buffer's memory, its file's bytes and its fill span its elements from the first to
// one past the last, gaps included. A launch plan's "touched" ranges must lie within its buffers, or the job is
// refused before anything runs; its "node" (optional) is the graph node it runs for, which failures name. "fill" makes
// the contents from a seed (dsl/core/seeded_fill.h). After the first run, each checked buffer must be within its
// tolerance of the expected values, element by element (NaN fails). run prints {"device": ..., "ms": ...} (and with
// timing "timing": {"ms": the mean over every timed run, "median_ms", "min_ms", "max_ms": per run over up to five
// batches of them, "batches", "gb_per_s" at the median, "copies"}) and exits 0, or prints the error (a failed check
// among them) and exits 1.
#include <sys/prctl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dsl/core/json_reader.h"
#include "dsl/core/launch_plan.h"
#include "runtime/gpu/device.h"
#include "runtime/gpu/device_job.h"

namespace {

namespace fs = std::filesystem;
using tetra::dsl::Failure;
using tetra::dsl::FailureKind;
using tetra::dsl::Result;
using tetra::dsl::Status;

std::string read_text(const fs::path& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  *ok = bool(in) || in.eof();
  return s.str();
}

Result<nlohmann::json> read_json(const fs::path& path) {
  bool ok = false;
  std::string text = read_text(path, &ok);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!ok || j.is_discarded()) return Failure{FailureKind::BadJson, path.string(), "is not a readable JSON file"};
  return j;
}

std::string dialect_of(const nlohmann::json& job) {
  return job.is_object() && job.contains("dialect") && job["dialect"].is_string() ? job["dialect"].get<std::string>()
                                                                                  : "opencl";
}

struct JobResult {
  double ms = 0;        // the first run, from the host
  double timed_ms = 0;  // per timed run over every timed run, when the job asks for timing
  double median_ms = 0, min_ms = 0, max_ms = 0;  // per run, over the batches of timed runs
  int batches = 0;
  double gb_per_s = 0;
  int copies = 1;  // sets of the rotated buffers the timed runs went through
};

// Timed runs that read their inputs cold: the named buffers copied on the device until the copies
// together hold "bytes", at most 256 sets, and each run reading the next set.
struct Rotation {
  std::vector<std::vector<tetra::dsl::LaunchPlan>> plans;  // per set: the launches, bound to its copies
  std::vector<std::string> copies;                         // the buffers made, to free after timing
};

Result<Rotation> rotate_buffers(const nlohmann::json& timing, const std::vector<tetra::dsl::LaunchPlan>& plans,
                                const std::map<std::string, int64_t>& buffer_bytes, tetra::gpu::Device& device) {
  Rotation rotation;
  rotation.plans = {plans};
  if (!timing.contains("rotate")) return rotation;
  tetra::dsl::JsonReader r(timing["rotate"], "rotate");
  const nlohmann::json* names = r.field("buffers");
  const int64_t target = r.integer("bytes", 0, int64_t(1) << 40);
  if (!r.ok()) return r.failure();
  if (!names->is_array() || names->empty())
    return Failure{FailureKind::BadJson, "rotate", "\"buffers\" is a non-empty array of buffer names"};
  int64_t set_bytes = 0;
  for (const nlohmann::json& name : *names) {
    auto it = name.is_string() ? buffer_bytes.find(name.get<std::string>()) : buffer_bytes.end();
    if (it == buffer_bytes.end())
      return Failure{FailureKind::BadJson, "rotate", "rotates only the job's buffers, not " + name.dump()};
    set_bytes += it->second;
  }
  const int64_t sets = std::clamp<int64_t>((target + set_bytes - 1) / std::max<int64_t>(set_bytes, 1), 1, 256);
  for (int64_t c = 1; c < sets; ++c) {
    std::map<std::string, std::string> rename;
    for (const nlohmann::json& name : *names) {
      const std::string from = name.get<std::string>(), to = from + "@" + std::to_string(c);
      const int64_t bytes = buffer_bytes.at(from);
      if (Status st = device.allocate(to, bytes); !st) return st.failure();
      if (Status st = device.copy(from, to, bytes); !st) return st.failure();
      rotation.copies.push_back(to);
      rename[from] = to;
    }
    // A copy has its original's shape: only the bound buffer changes, never the inputs naming its fields.
    std::vector<tetra::dsl::LaunchPlan> set = plans;
    for (tetra::dsl::LaunchPlan& plan : set)
      for (tetra::dsl::KernelParam& p : plan.params)
        if (p.is_buffer && rename.count(p.name)) p.name = rename[p.name];
    rotation.plans.push_back(std::move(set));
  }
  return rotation;
}

// Each checked buffer against its expected values; the first mismatches in the Failure.
Status check_outputs(const nlohmann::json& checks, tetra::gpu::Device& device, const fs::path& dir,
                     const std::map<std::string, int64_t>& elements) {
  if (!checks.is_array()) return Failure{FailureKind::BadJson, "check", "\"check\" is an array"};
  for (const nlohmann::json& c : checks) {
    tetra::dsl::JsonReader r(c, "check");
    std::string name = r.text("buffer"), expect = r.text("expect"), tolerance = r.text("tolerance");
    if (!r.ok()) return r.failure();
    auto count = elements.find(name);
    if (count == elements.end()) return Failure{FailureKind::BadJson, name, "a checked buffer is a float32 buffer"};
    const size_t n = size_t(count->second);
    std::vector<float> got(n), want(n), tol(n);
    if (Status st = device.read(name, got.data(), int64_t(n * 4)); !st) return st;
    for (auto [path, values] : {std::pair{expect, &want}, std::pair{tolerance, &tol}}) {
      bool ok = false;
      std::string bytes = read_text(dir / path, &ok);
      if (!ok || bytes.size() != n * 4)
        return Failure{FailureKind::Run, path, "does not hold " + std::to_string(n) + " float32 values for " + name};
      std::memcpy(values->data(), bytes.data(), n * 4);
    }
    std::ostringstream report;
    int64_t bad = 0;
    for (size_t i = 0; i < n; ++i)
      if (!(std::fabs(double(got[i]) - want[i]) <= tol[i])) {  // NaN (never written) fails too
        if (bad++ < 5)
          report << "\n  " << name << "[" << i << "] = " << got[i] << ", want " << want[i] << " ± " << tol[i];
      }
    if (bad)
      return Failure{FailureKind::Run, name,
                     std::to_string(bad) + " of " + std::to_string(n) + " outputs differ" + report.str()};
  }
  return tetra::dsl::ok_status();
}

Result<JobResult> run_job(const nlohmann::json& job, const fs::path& dir, tetra::gpu::Device& device) {
  auto read_file = [&](const std::string& file) -> Result<std::string> {
    bool ok = false;
    std::string text = read_text(dir / file, &ok);
    if (!ok) return Failure{FailureKind::Run, file, "cannot read the job's file"};
    return text;
  };
  Result<tetra::gpu::LoadedJob> loaded = tetra::gpu::load_job(job, read_file, device);
  if (!loaded) return loaded.failure();
  const std::vector<tetra::dsl::LaunchPlan>& plans = loaded.value().plans;
  const std::map<std::string, int64_t>& inputs = loaded.value().inputs;
  const std::map<std::string, int64_t>& buffer_bytes = loaded.value().buffer_bytes;
  const std::map<std::string, int64_t>& float_elements = loaded.value().float_elements;
  JobResult result;
  auto start = std::chrono::steady_clock::now();
  if (Status st = loaded.value().enqueue(device); !st) return st.failure();
  for (const tetra::gpu::LoadedJob::Output& o : loaded.value().outputs) {
    std::string data(size_t(o.bytes), '\0');
    if (Status st = device.read(o.buffer, data.data(), o.bytes); !st) return st.failure();
    std::ofstream out(dir / o.file, std::ios::binary);
    out.write(data.data(), std::streamsize(data.size()));
    if (!out) return Failure{FailureKind::Run, o.file, "cannot write the output"};
  }
  if (job.contains("check"))
    if (Status st = check_outputs(job["check"], device, dir, float_elements); !st) return st.failure();
  result.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (job.contains("timing")) {
    tetra::dsl::JsonReader t(job["timing"], "timing");
    int64_t runs = t.integer("runs", 1, 100000), bytes = t.integer("bytes", 0, int64_t(1) << 50);
    if (!t.ok()) return t.failure();
    Result<Rotation> rotation = rotate_buffers(job["timing"], plans, buffer_bytes, device);
    if (!rotation) return rotation.failure();
    const std::vector<std::vector<tetra::dsl::LaunchPlan>>& sets = rotation.value().plans;
    size_t next = 0;
    auto run_next = [&]() -> Status {
      for (const tetra::dsl::LaunchPlan& plan : sets[next++ % sets.size()])
        if (Status st = tetra::gpu::launch(device, plan, inputs); !st) return st;
      return tetra::dsl::ok_status();
    };
    // In up to five batches of runs back to back, each timed by the device: the median batch is robust
    // to a stall in one of them, which moves a mean over every run.
    const int64_t batches = std::min<int64_t>(runs, 5);
    std::vector<double> per_run;
    double total = 0;
    for (int64_t k = 0; k < batches; ++k) {
      const int64_t n = runs / batches + (k < runs % batches ? 1 : 0);
      Result<double> ms = device.time_runs(run_next, int(n));
      if (!ms) return ms.failure();
      per_run.push_back(ms.value());
      total += ms.value() * double(n);
    }
    std::sort(per_run.begin(), per_run.end());
    const size_t mid = per_run.size() / 2;
    result.median_ms = per_run.size() % 2 ? per_run[mid] : (per_run[mid - 1] + per_run[mid]) / 2;
    result.min_ms = per_run.front();
    result.max_ms = per_run.back();
    result.batches = int(batches);
    result.timed_ms = total / double(runs);
    result.gb_per_s = double(bytes) / (result.median_ms * 1e6);
    result.copies = int(sets.size());
    // The last copy computes what the first did: a copy the runs read is whole.
    if (sets.size() > 1 && job.contains("check")) {
      next = sets.size() - 1;
      if (Status st = run_next(); !st) return st.failure();
      if (Status st = check_outputs(job["check"], device, dir, float_elements); !st)
        return Failure{FailureKind::Run, st.failure().subject, "with the last rotated copy: " + st.failure().message};
    }
    for (const std::string& copy : rotation.value().copies) device.allocate(copy, 0);
  }
  return result;
}

// GB/s of a device-to-device copy of `bytes`, counting the bytes read and written.
Result<double> copy_bandwidth(tetra::gpu::Device& device, int64_t bytes) {
  for (const char* name : {"copy_from", "copy_to"})
    if (Status st = device.allocate(name, bytes); !st) return st.failure();
  auto copy = [&] { return device.copy("copy_from", "copy_to", bytes); };
  if (Status st = copy(); !st) return st.failure();  // warm-up
  Result<double> ms = device.time_runs(copy, 20);
  if (!ms) return ms.failure();
  for (const char* name : {"copy_from", "copy_to"}) device.allocate(name, 0);
  return 2.0 * double(bytes) / (ms.value() * 1e6);
}

int check_bundle(const fs::path& bundle_dir) {
  Result<nlohmann::json> bundle = read_json(bundle_dir / "bundle.json");
  if (!bundle) {
    std::fprintf(stderr, "tetra-device: %s\n", bundle.failure().describe().c_str());
    return 1;
  }
  const nlohmann::json& b = bundle.value();
  tetra::dsl::JsonReader r(b, "bundle");
  const std::string dialect = r.text("dialect");
  const int64_t copy_bytes = r.integer("copy_bytes", 1, int64_t(1) << 36);
  const nlohmann::json* jobs = r.field("jobs");
  if (r.ok() && !(jobs->is_array() && std::all_of(jobs->begin(), jobs->end(), [](auto& j) { return j.is_string(); })))
    r.fail_with("\"jobs\" is an array of folder names");
  if (!r.ok()) {
    std::fprintf(stderr, "tetra-device: %s\n", r.failure().describe().c_str());
    return 1;
  }
  auto device = tetra::gpu::open_device(dialect);
  if (!device) {
    std::fprintf(stderr, "tetra-device: %s\n", device.failure().describe().c_str());
    return 2;
  }
  nlohmann::json results = {{"device", device.value()->name()}, {"jobs", nlohmann::json::array()}};
  std::printf("device: %s\n", device.value()->name().c_str());
  Result<double> copy = copy_bandwidth(*device.value(), copy_bytes);
  if (!copy) {
    std::fprintf(stderr, "tetra-device: %s\n", copy.failure().describe().c_str());
    return 1;
  }
  results["copy_gb_per_s"] = copy.value();
  std::printf("copy bandwidth: %.1f GB/s (a device-to-device copy of %.0f MiB, bytes read + written)\n\n", copy.value(),
              double(copy_bytes) / (1 << 20));
  std::printf("%-5s %10s %8s %8s  %s\n", "check", "ms", "GB/s", "of copy", "job");
  int failed = 0;
  for (const nlohmann::json& name : *jobs) {
    const fs::path dir = bundle_dir / name.get<std::string>();
    nlohmann::json row = {{"job", name}};
    Result<nlohmann::json> job = read_json(dir / "job.json");
    Result<JobResult> run = job ? run_job(job.value(), dir, *device.value()) : Result<JobResult>(job.failure());
    std::string title =
        job && job.value().contains("title") ? job.value()["title"].get<std::string>() : name.get<std::string>();
    row["title"] = title;
    if (!run) {
      ++failed;
      row["error"] = run.failure().describe();
      std::printf("%-5s %10s %8s %8s  %s\n      %s\n", "FAIL", "", "", "", title.c_str(),
                  run.failure().describe().c_str());
    } else if (run.value().timed_ms > 0) {
      row["ms"] = run.value().median_ms;
      row["gb_per_s"] = run.value().gb_per_s;
      std::printf("%-5s %10.4f %8.1f %7.1f%%  %s\n", "ok", run.value().median_ms, run.value().gb_per_s,
                  100.0 * run.value().gb_per_s / copy.value(), title.c_str());
    } else {
      std::printf("%-5s %10s %8s %8s  %s\n", "ok", "", "", "", title.c_str());
    }
    results["jobs"].push_back(row);
    std::fflush(stdout);
  }
  std::ofstream(bundle_dir / "results.json") << results.dump(1) << "\n";
  std::printf("\n%zu jobs, %d failed\n", jobs->size(), failed);
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A job dies with whoever started it: a tuning worker killed at its timeout or with its tuner must not
  // leave a kernel running on the device.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string command = args.empty() ? "" : args[0];
  const bool info = command == "info" && (args.size() == 1 || (args.size() == 3 && args[1] == "--dialect"));
  if (!info && !((command == "run" || command == "check") && args.size() == 2)) {
    std::fprintf(stderr,
                 "usage: tetra-device info [--dialect opencl|cuda|hip] | tetra-device run JOB.json | "
                 "tetra-device check BUNDLE\n");
    return 2;
  }
  if (command == "check") return check_bundle(args[1]);
  Result<nlohmann::json> job = info ? Result<nlohmann::json>(nlohmann::json::object()) : read_json(args[1]);
  if (!job) {
    std::fprintf(stderr, "tetra-device: %s is not a readable JSON job\n", args[1].c_str());
    return 1;
  }
  const std::string dialect = info ? (args.size() == 3 ? args[2] : "opencl") : dialect_of(job.value());
  auto device = tetra::gpu::open_device(dialect);
  if (!device) {
    std::fprintf(stderr, "tetra-device: %s\n", device.failure().describe().c_str());
    return 2;
  }
  if (info) {
    std::cout << nlohmann::json{{"device", device.value()->name()},
                                {"dialect", dialect},
                                {"arch", device.value()->arch()}}
                     .dump()
              << "\n";
    return 0;
  }
  Result<JobResult> run = run_job(job.value(), fs::path(args[1]).parent_path(), *device.value());
  if (!run) {
    std::fprintf(stderr, "tetra-device: %s\n", run.failure().describe().c_str());
    return 1;
  }
  nlohmann::json out = {{"device", device.value()->name()}, {"ms", run.value().ms}};
  if (run.value().timed_ms > 0)
    out["timing"] = {{"ms", run.value().timed_ms},     {"median_ms", run.value().median_ms},
                     {"min_ms", run.value().min_ms},   {"max_ms", run.value().max_ms},
                     {"batches", run.value().batches}, {"gb_per_s", run.value().gb_per_s},
                     {"copies", run.value().copies}};
  std::cout << out.dump() << "\n";
  return 0;
}
