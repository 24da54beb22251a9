// Oclgrind (Debian's oclgrind, which scripts/setup.sh installs): an OpenCL device that simulates every
// work-item and reports each access past a buffer, each data race on global or workgroup memory, and each
// barrier that only part of a workgroup reaches. pocl runs work-items as host code, where none of these
// shows; a GPU shows them as wrong answers or faults, and only sometimes.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "dsl/process.h"

namespace tetra::test {

// The path of Oclgrind's ICD library, "" where it is not installed.
std::string oclgrind_icd();

// Runs `argv` (a program that opens an OpenCL device: tetra-device, tetra) with Oclgrind as its only
// OpenCL device, race detection on, and a GPU's limits. `scratch`: a folder for the ICD loader's vendor file.
dsl::ProgramRun run_on_oclgrind(const std::vector<std::string>& argv, const std::filesystem::path& scratch);

// What Oclgrind reported in a run's output: each fault's first line, "" when there was none.
std::string oclgrind_faults(const std::string& output);

}  // namespace tetra::test
