// Every ONNX node test case in tests/data/onnx-conformance (ONNX's own node tests, Apache-2.0; see the
// SOURCE.md of each suite) runs through `tetra run` and must match
// its expected outputs within the ONNX backend tolerance.
#include <filesystem>
#include <map>

#include <catch2/catch.hpp>

#include "tests/test_support.h"

namespace fs = std::filesystem;
using namespace tetra::test;

namespace {

// Cases that are allowed to fail, with the reason from the spec. Empty: all must pass.
const std::map<std::string, std::string> kExceptions = {};

std::vector<fs::path> conformance_cases() {
  fs::path root = fs::path(source_dir()) / "tests" / "data" / "onnx-conformance";
  std::vector<fs::path> cases;
  if (!fs::is_directory(root)) return cases;
  for (const auto& suite : fs::directory_iterator(root))
    if (suite.is_directory())
      for (const auto& c : fs::directory_iterator(suite.path()))
        if (fs::exists(c.path() / "model.onnx")) cases.push_back(c.path());
  std::sort(cases.begin(), cases.end());
  return cases;
}

void check_cases(const std::string& backend) {
  std::vector<fs::path> cases = conformance_cases();
  REQUIRE(cases.size() >= 82);  // the set: 65 opset-25 era + 17 opset-21 cases
  for (const fs::path& c : cases) {
    std::string id = c.parent_path().filename().string() + "/" + c.filename().string();
    DYNAMIC_SECTION(id) {
      std::string out = temp_dir("conformance");
      std::string log;
      int rc = run_command(tetra_cli() + " run " + (c / "model.onnx").string() + " --test-data " +
                               (c / "test_data_set_0").string() + " --output-dir " + out + " --backend " + backend,
                           &log);
      INFO(log);
      auto exception = kExceptions.find(c.filename().string());
      if (exception == kExceptions.end()) {
        CHECK(rc == 0);
        CHECK(fs::exists(fs::path(out) / "output_0.pb"));
      } else {
        INFO("listed exception: " << exception->second);
        CHECK(rc != 0);  // the list stays honest: an exception that passes must be removed
      }
    }
  }
}

}  // namespace

TEST_CASE("ONNX node conformance cases pass on the reference backend", "[conformance]") {
  check_cases("reference");
}

TEST_CASE("ONNX node conformance cases pass on the Halide backend", "[conformance][halide]") {
  check_cases("halide");
}
