#include "tests/halide/gpu_device_job.h"

#include <unistd.h>

#include <fstream>

#include "dsl/gpu/code_object.h"
#include "dsl/gpu/launch_plan_of.h"
#include "tests/oclgrind.h"

namespace tetra::gpu_test {

fs::path work_dir(const std::string& tag) {
  fs::path dir = fs::temp_directory_path() / ("tetra_gpu_" + tag + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

void write_bytes(const fs::path& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(bytes));
  REQUIRE(bool(out));
}

nlohmann::json check_entry(const fs::path& dir, const std::string& name, const std::vector<float>& want,
                           const std::vector<float>& tolerance) {
  REQUIRE(want.size() == tolerance.size());
  write_bytes(dir / (name + ".expect.bin"), want.data(), want.size() * sizeof(float));
  write_bytes(dir / (name + ".tolerance.bin"), tolerance.data(), tolerance.size() * sizeof(float));
  return {{"buffer", name}, {"expect", name + ".expect.bin"}, {"tolerance", name + ".tolerance.bin"}};
}

std::string remove_opencl_barriers(std::string source, int* removed) {
  const std::string barrier = "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);";
  for (size_t at; (at = source.find(barrier)) != std::string::npos; ++*removed) source.erase(at, barrier.size());
  return source;
}

nlohmann::json kernel_job(const std::vector<dsl::gpu::DeviceKernel>& kernels, const JobDialect& d, const fs::path& dir,
                          const std::function<std::string(std::string)>& edit) {
  using namespace dsl::gpu;
  dsl::Result<std::string> source = emit_kernels(kernels, d.dialect);
  INFO((source.ok() ? "" : source.failure().describe()));
  REQUIRE(source.ok());
  const std::string text = edit ? edit(source.value()) : source.value();
  std::string file = "kernels.cl";
  if (d.dialect == Dialect::Cuda) {
    file = "kernels.ptx";
    dsl::Status built = build_ptx(text, d.sm, (dir / file).string());
    INFO((built.ok() ? "" : built.failure().describe()));
    REQUIRE(built.ok());
  } else {
    REQUIRE(d.dialect == Dialect::OpenCL);
    write_bytes(dir / file, text.data(), text.size());
  }
  nlohmann::json job = {{"dialect", dialect_name(d.dialect)}, {"source", file}, {"kernels", nlohmann::json::array()}};
  for (const DeviceKernel& k : kernels) {
    dsl::Result<dsl::LaunchPlan> plan = launch_plan_of(k);
    INFO((plan.ok() ? "" : plan.failure().describe()));
    REQUIRE(plan.ok());
    job["kernels"].push_back(plan.value().to_json());
  }
  return job;
}

bool opencl_runs_here() {
  if (fs::exists("/sys/devices/system/cpu")) return true;
  WARN("no /sys/devices/system/cpu: pocl cannot find its CPU device here, so the OpenCL runs are skipped");
  return false;
}

namespace {
// Writes `job` to DIR/job.json; the command that runs it.
std::vector<std::string> write_job(const nlohmann::json& job, const fs::path& dir) {
  std::ofstream(dir / "job.json") << job.dump(1);
  return {std::string(TETRA_BINARY_DIR) + "/bin/tetra-device", "run", (dir / "job.json").string()};
}
}  // namespace

dsl::ProgramRun run_job(const nlohmann::json& job, const fs::path& dir) {
  return dsl::run_program(write_job(job, dir));
}

dsl::ProgramRun run_job_on_oclgrind(const nlohmann::json& job, const fs::path& dir) {
  return test::run_on_oclgrind(write_job(job, dir), dir);
}

}  // namespace tetra::gpu_test
