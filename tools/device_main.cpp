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
//            "buffers": {NAME: {"type": "f32", "extents": [innermost first],
//                               "file": IN | "fill": {"seed": S, "lo": L, "hi": H}, "output": OUT}
//                              | {"type", "extents", "alias": BUFFER}},   (a view: a kernel binding BUFFER
//                                                                           reads NAME's fields)
//            "scalars": {NAME: number},               (a float goes to the kernel as float32)
//            "check": [{"buffer": NAME, "expect": FILE, "tolerance": FILE}],   (optional; float32 each)
//            "timing": {"runs": R, "bytes": B,        (optional: R more runs, timed; B bytes moved a run)
//                       "rotate": {"buffers": [NAME, ...], "bytes": C}},   (optional: the runs read copies of
//                                  these buffers in turn, enough sets to hold C bytes, at most 256; the last
//                                  set is checked too)
//            "title": TEXT}                           (optional: the job's line in check's table)
// Files are relative to the job's folder. Buffers are dense with mins of 0: their fields ("A.extent.0",
// "A.stride.1", "A.min.0") and the scalars are the launch's inputs. "fill" makes the contents from a
// seed (dsl/core/seeded_fill.h). After the first run, each checked buffer must be within its tolerance
// of the expected values, element by element (NaN fails). run prints {"device": ..., "ms": ...} (and with
// timing "timing": {"ms", "gb_per_s", "copies"}) and exits 0, or prints the error (a failed check among
// them) and exits 1.
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
#include "dsl/core/seeded_fill.h"
#include "runtime/gpu/device.h"
#include "runtime/gpu/hip_device.h"
#include "runtime/gpu/pick_code_object.h"

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
  double timed_ms = 0;  // per timed run, when the job asks for timing
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

// The file of the job's program: "source" itself, or the code object of the device's arch when a HIP
// job offers one per arch.
Result<std::string> source_file(const nlohmann::json& source, tetra::gpu::Device& device) {
  if (source.is_string()) return source.get<std::string>();
  const auto* hip = dynamic_cast<const tetra::gpu::HipDevice*>(&device);
  if (!hip || !source.is_object() || source.empty() ||
      !std::all_of(source.begin(), source.end(), [](const nlohmann::json& f) { return f.is_string(); }))
    return Failure{
        FailureKind::BadJson, "device job",
        "\"source\" must be a file, or for a hip job an object of code-object files by arch, not " + source.dump()};
  return tetra::gpu::pick_code_object(source.get<std::map<std::string, std::string>>(), hip->arch());
}

Result<JobResult> run_job(const nlohmann::json& job, const fs::path& dir, tetra::gpu::Device& device) {
  tetra::dsl::JsonReader r(job, "device job");
  const nlohmann::json* source_field = r.field("source");
  const nlohmann::json* kernels = r.field("kernels");
  const nlohmann::json* buffers = r.field("buffers");
  const nlohmann::json* scalars = r.field("scalars");
  if (!r.ok()) return r.failure();
  if (!kernels->is_array() || !buffers->is_object() || !scalars->is_object())
    return Failure{FailureKind::BadJson, "device job", "\"kernels\" is an array, \"buffers\" and \"scalars\" objects"};
  Result<std::string> source_name = source_file(*source_field, device);
  if (!source_name) return source_name.failure();
  const std::string& source_path = source_name.value();
  bool ok = false;
  std::string source = read_text(dir / source_path, &ok);
  if (!ok) return Failure{FailureKind::Run, source_path, "cannot read the kernel source"};

  std::map<std::string, int64_t> inputs;
  for (auto it = scalars->begin(); it != scalars->end(); ++it) {
    if (it->is_number_integer()) {
      inputs[it.key()] = it->get<int64_t>();
    } else if (it->is_number_float()) {  // a float parameter goes by its float32 bits
      float f = it->get<float>();
      uint32_t bits = 0;
      std::memcpy(&bits, &f, sizeof bits);
      inputs[it.key()] = int64_t(bits);
    } else {
      return Failure{FailureKind::BadJson, it.key(), "a scalar input is a number"};
    }
  }
  struct Output {
    std::string name, path;
    int64_t bytes;
  };
  std::vector<Output> outputs;
  std::map<std::string, int64_t> float_elements;  // the float32 buffers, which a check may name
  std::map<std::string, int64_t> buffer_bytes;
  if (Status st = device.build(source); !st) return st.failure();
  // Views ("alias") after the buffers they view.
  std::vector<nlohmann::json::const_iterator> entries;
  for (auto it = buffers->cbegin(); it != buffers->cend(); ++it)
    if (!it->contains("alias")) entries.push_back(it);
  for (auto it = buffers->cbegin(); it != buffers->cend(); ++it)
    if (it->contains("alias")) entries.push_back(it);
  for (const nlohmann::json::const_iterator& it : entries) {
    tetra::dsl::JsonReader b(*it, "buffer " + it.key());
    tetra::dsl::KernelParam element;
    element.type = b.text("type");
    const nlohmann::json* extents = b.field("extents");
    const std::string file = it->contains("file") ? b.text("file") : "";
    const std::string output = it->contains("output") ? b.text("output") : "";
    const nlohmann::json* fill = it->contains("fill") ? b.field("fill") : nullptr;
    if (b.ok() && !(extents->is_array() && std::all_of(extents->begin(), extents->end(), [](const nlohmann::json& e) {
                      return e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() < (int64_t(1) << 31);
                    })))
      b.fail_with("\"extents\" must be integers from 0 to 2^31");
    if (b.ok() && element.bytes() == 4 && element.type != "f32" && element.type != "i32" && element.type != "u32")
      b.fail_with("\"type\" must be one of f32 f16 i8 u8 i16 u16 i32 u32 i64 u64, not \"" + element.type + "\"");
    if (b.ok() && fill &&
        !(fill->is_object() && fill->contains("seed") && (*fill)["seed"].is_number_unsigned() && fill->contains("lo") &&
          (*fill)["lo"].is_number() && fill->contains("hi") && (*fill)["hi"].is_number()))
      b.fail_with("\"fill\" is {\"seed\": an unsigned integer, \"lo\": a number, \"hi\": a number}");
    if (!b.ok()) return b.failure();
    int64_t count = 1;
    for (size_t d = 0; d < extents->size(); ++d) {
      int64_t e = (*extents)[d].get<int64_t>();
      inputs[it.key() + ".min." + std::to_string(d)] = 0;
      inputs[it.key() + ".extent." + std::to_string(d)] = e;
      inputs[it.key() + ".stride." + std::to_string(d)] = count;
      count *= e;
    }
    const int64_t bytes = count * element.bytes();
    if (it->contains("alias")) {  // a view: its own fields over another buffer's memory, which kernels bind
      const std::string of = b.text("alias");
      auto base = buffer_bytes.find(of);
      if (b.ok() && (base == buffer_bytes.end() || (*buffers)[of].contains("alias")))
        b.fail_with("\"alias\" names a buffer of the job that is no view, not \"" + of + "\"");
      if (b.ok() && (base->second < bytes || (*buffers)[of]["type"] != (*it)["type"]))
        b.fail_with("views more than " + of + " holds, or as another type");
      if (b.ok() && (!file.empty() || fill || !output.empty()))
        b.fail_with("a view has no contents of its own (\"file\", \"fill\", \"output\")");
      if (!b.ok()) return b.failure();
      continue;
    }
    if (element.type == "f32") float_elements[it.key()] = count;
    buffer_bytes[it.key()] = bytes;
    if (Status st = device.allocate(it.key(), bytes); !st) return st.failure();
    if (!file.empty()) {
      std::string data = read_text(dir / file, &ok);
      if (!ok || int64_t(data.size()) != bytes)
        return Failure{FailureKind::Run, it.key(), "its file does not hold " + std::to_string(bytes) + " bytes"};
      if (Status st = device.write(it.key(), data.data(), bytes); !st) return st.failure();
    } else if (fill) {
      std::vector<char> data(static_cast<size_t>(bytes));
      if (!tetra::dsl::seeded_fill(data.data(), count, element.type, (*fill)["seed"].get<uint64_t>(),
                                   (*fill)["lo"].get<double>(), (*fill)["hi"].get<double>()))
        return Failure{FailureKind::BadJson, it.key(), "no fill for type " + element.type};
      if (Status st = device.write(it.key(), data.data(), bytes); !st) return st.failure();
    }
    if (!output.empty()) outputs.push_back({it.key(), output, bytes});
  }
  std::vector<tetra::dsl::LaunchPlan> plans;
  for (const nlohmann::json& k : *kernels) {
    auto plan = tetra::dsl::LaunchPlan::from_json(k);
    if (!plan) return plan.failure();
    plans.push_back(plan.value());
  }
  auto run_all = [&]() -> Status {
    for (const tetra::dsl::LaunchPlan& plan : plans)
      if (Status st = device.launch(plan, inputs); !st) return st;
    return tetra::dsl::ok_status();
  };
  JobResult result;
  auto start = std::chrono::steady_clock::now();
  if (Status st = run_all(); !st) return st.failure();
  for (const Output& o : outputs) {
    std::string data(size_t(o.bytes), '\0');
    if (Status st = device.read(o.name, data.data(), o.bytes); !st) return st.failure();
    std::ofstream out(dir / o.path, std::ios::binary);
    out.write(data.data(), std::streamsize(data.size()));
    if (!out) return Failure{FailureKind::Run, o.path, "cannot write the output"};
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
        if (Status st = device.launch(plan, inputs); !st) return st;
      return tetra::dsl::ok_status();
    };
    Result<double> ms = device.time_runs(run_next, int(runs));
    if (!ms) return ms.failure();
    result.timed_ms = ms.value();
    result.gb_per_s = double(bytes) / (ms.value() * 1e6);
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
      row["ms"] = run.value().timed_ms;
      row["gb_per_s"] = run.value().gb_per_s;
      std::printf("%-5s %10.4f %8.1f %7.1f%%  %s\n", "ok", run.value().timed_ms, run.value().gb_per_s,
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
    out["timing"] = {{"ms", run.value().timed_ms}, {"gb_per_s", run.value().gb_per_s}, {"copies", run.value().copies}};
  std::cout << out.dump() << "\n";
  return 0;
}
