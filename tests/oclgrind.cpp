#include "tests/oclgrind.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

namespace tetra::test {

namespace fs = std::filesystem;

std::string oclgrind_icd() {
  const char* icd = "/usr/lib/oclgrind/liboclgrind-rt-icd.so";  // Debian's path, on every arch
  return fs::exists(icd) ? icd : "";
}

dsl::ProgramRun run_on_oclgrind(const std::vector<std::string>& argv, const fs::path& scratch) {
  // The ICD loader reads its vendors from a folder: one naming only Oclgrind makes it the device.
  const fs::path vendors = scratch / "oclgrind_vendors";
  fs::create_directories(vendors);
  std::ofstream(vendors / "oclgrind.icd") << oclgrind_icd() << "\n";
  // A GPU's limits where Oclgrind's defaults are smaller: 64 KiB of workgroup memory, 1024 threads a block.
  const std::vector<std::pair<std::string, std::string>> settings = {{"OCL_ICD_VENDORS", vendors.string()},
                                                                     {"OCLGRIND_DATA_RACES", "1"},
                                                                     {"OCLGRIND_LOCAL_MEM_SIZE", "65536"},
                                                                     {"OCLGRIND_MAX_WGSIZE", "1024"}};
  std::vector<std::pair<std::string, std::optional<std::string>>> before;
  for (const auto& [name, value] : settings) {
    const char* was = std::getenv(name.c_str());
    before.push_back({name, was ? std::optional<std::string>(was) : std::nullopt});
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  dsl::ProgramRun run = dsl::run_program(argv);
  for (const auto& [name, value] : before) {  // the caller's environment, as it was
    if (value) ::setenv(name.c_str(), value->c_str(), 1);
    if (!value) ::unsetenv(name.c_str());
  }
  return run;
}

std::string oclgrind_faults(const std::string& output) {
  std::string faults, line;
  for (std::istringstream lines(output); std::getline(lines, line);)
    for (const char* fault :
         {"Invalid read", "Invalid write", "data race", "divergence", "Uninitialized", "Unaligned", "Unrecognized"})
      if (line.find(fault) != std::string::npos) {
        faults += line + "\n";
        break;
      }
  return faults;
}

}  // namespace tetra::test
