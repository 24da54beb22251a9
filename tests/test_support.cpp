#include "tests/test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "dsl/target.h"

namespace tetra::test {

std::mt19937& rng() {
  // One generator per test case, seeded from its name: a test's data does not depend on which
  // tests ran before it in the same process.
  static std::map<std::string, std::mt19937> generators;
  std::string test = Catch::getResultCapture().getCurrentTestName();
  auto it = generators.find(test);
  if (it == generators.end()) it = generators.emplace(test, std::mt19937(std::hash<std::string>{}(test) ^ 0x7e7a)).first;
  return it->second;
}

Tensor random_tensor(DType dtype, const Shape& shape, double lo, double hi) {
  Tensor t(dtype, shape);
  std::uniform_real_distribution<double> uni(lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) {
    double v = uni(rng());
    if (is_integer(dtype)) v = std::floor(v + 0.5);
    t.set(i, v);
  }
  if (t.size() > 1 && t.get(0) == t.get(1)) t.set(0, is_integer(dtype) ? lo : (lo + hi) / 3.0 + 0.01);
  return t;
}

// Removes the folders this process made when it exits, unless TETRA_KEEP_TEST_FILES is set.
static void remove_temp_dirs_at_exit(const std::string& dir) {
  static std::vector<std::string> made;
  if (made.empty() && !std::getenv("TETRA_KEEP_TEST_FILES"))
    std::atexit([] {
      for (const std::string& d : made) std::filesystem::remove_all(d);
    });
  made.push_back(dir);
}

double relative_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    num += (a.get(i) - b.get(i)) * (a.get(i) - b.get(i));
    den += b.get(i) * b.get(i);
  }
  return std::sqrt(num / den);
}

std::string temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  static int counter = 0;
  fs::path root = fs::path(TETRA_BINARY_DIR) / "test_tmp";
  fs::path dir = root / (tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  remove_temp_dirs_at_exit(dir.string());
  return dir.string();
}

int run_command(const std::string& command, std::string* output) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buffer;
  std::string text;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) text.append(buffer.data(), n);
  int status = pclose(pipe);
  if (output) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string tetra_cli() { return std::string(TETRA_BINARY_DIR) + "/bin/tetra"; }
std::string tetra_device_program() { return std::string(TETRA_BINARY_DIR) + "/bin/tetra-device"; }

std::string hip_stand_in(const std::string& arch, const std::string& log, const std::string& settings) {
  return "LD_LIBRARY_PATH=" + std::string(TETRA_BINARY_DIR) + "/fake_hip TETRA_FAKE_HIP_ARCH=" + arch +
         " TETRA_FAKE_HIP_LOG=" + log + " " + settings + " ";
}

std::string cuda_stand_in(int sm, const std::string& log, const std::string& settings) {
  return "LD_LIBRARY_PATH=" + std::string(TETRA_BINARY_DIR) + "/fake_cuda TETRA_FAKE_CUDA_SM=" + std::to_string(sm) +
         " TETRA_FAKE_CUDA_LOG=" + log + " " + settings + " ";
}

std::vector<nlohmann::json> stand_in_reports(const std::string& log) {
  std::vector<nlohmann::json> reports;
  std::ifstream in(log);
  for (std::string line; std::getline(in, line);) reports.push_back(nlohmann::json::parse(line));
  return reports;
}

void check_stand_in_reports(const std::string& log) {
  for (const nlohmann::json& report : stand_in_reports(log)) {
    INFO(log << ": " << report.dump());
    CHECK(report["refused"].empty());
    CHECK(report["live_allocations"] == 0);
    CHECK(report["live_modules"] == 0);
  }
}

bool opencl_runs_here(const std::string& skipped) {
  if (std::filesystem::exists("/sys/devices/system/cpu")) return true;
  WARN("no /sys/devices/system/cpu: pocl cannot find its CPU device here, so " << skipped << " are skipped");
  return false;
}
std::string source_dir() { return TETRA_SOURCE_DIR; }

std::vector<std::string> cpu_targets_here() {
  std::vector<std::string> targets = {""};
  dsl::Result<dsl::TargetSpec> avx2 = dsl::parse_target("x86-64-avx2");
  if (avx2.ok() && dsl::runs_on_host(avx2.value()).ok() &&
      avx2.value().vector_registers() != dsl::host_target().vector_registers())
    targets.push_back("x86-64-avx2");
  return targets;
}

std::string compare_tensors(const Tensor& got, const Tensor& expected, double atol, double rtol) {
  std::ostringstream s;
  if (got.shape() != expected.shape()) {
    s << "shape " << shape_str(got.shape()) << " vs expected " << shape_str(expected.shape());
    return s.str();
  }
  double worst = 0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < got.size(); ++i) {
    double g = got.get(i), e = expected.get(i);
    double excess = std::fabs(g - e) - (atol + rtol * std::fabs(e));
    if (std::isnan(g) != std::isnan(e)) excess = INFINITY;
    if (excess > worst) {
      worst = excess;
      worst_i = i;
    }
  }
  if (worst_i < 0) return "";
  s << "element " << worst_i << ": got " << got.get(worst_i) << ", expected " << expected.get(worst_i);
  return s.str();
}

std::vector<std::string> add_single_node(ModelBuilder& b, const std::string& op, const std::vector<Attr>& attrs,
                                         const std::vector<Tensor>& in) {
  b.input("x", in.at(0).dtype(), in[0].shape());
  std::vector<std::string> names{"x"};
  for (size_t i = 1; i < in.size(); ++i) {
    names.push_back(in[i].empty() ? "" : "c" + std::to_string(i));
    if (!in[i].empty()) b.initializer(names.back(), in[i]);
  }
  b.output("y", in[0].dtype());
  b.node(op, names, {"y"}, attrs);
  return names;
}

}  // namespace tetra::test
