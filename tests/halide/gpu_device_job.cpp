#include "tests/halide/gpu_device_job.h"

#include <unistd.h>

#include <fstream>

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

bool opencl_runs_here() {
  if (fs::exists("/sys/devices/system/cpu")) return true;
  WARN("no /sys/devices/system/cpu: pocl cannot find its CPU device here, so the OpenCL runs are skipped");
  return false;
}

dsl::ProgramRun run_job(const nlohmann::json& job, const fs::path& dir) {
  std::ofstream(dir / "job.json") << job.dump(1);
  return dsl::run_program({std::string(TETRA_BINARY_DIR) + "/bin/tetra-device", "run", (dir / "job.json").string()});
}

}  // namespace tetra::gpu_test
