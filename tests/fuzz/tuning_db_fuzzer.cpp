// libFuzzer harness: bytes -> DIR/records.json, then the same bytes as the journal DIR/journal.jsonl ->
// TuningDatabase::open and a lookup, as every `tetra db` command and `run --db` read a database. A
// tetra::Error is a refusal; anything else is a bug.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "importer/error.h"
#include "tuner/database.h"

namespace {

// One folder per fuzzing process, in memory where there is /dev/shm, removed at exit. Never destroyed:
// the exit handler still needs its name.
const std::string& fuzz_dir() {
  static const std::string* dir = [] {
    std::filesystem::path base = std::filesystem::is_directory("/dev/shm") ? std::filesystem::path("/dev/shm")
                                                                           : std::filesystem::temp_directory_path();
    auto* d = new std::string((base / ("tetra_db_fuzz_" + std::to_string(getpid()))).string());
    std::filesystem::create_directories(*d);
    std::atexit([] { std::filesystem::remove_all(fuzz_dir()); });
    return d;
  }();
  return *dir;
}

// Writes the bytes as `name` (and nothing else) in the folder, then reads the database.
void read_as(const std::string& name, const uint8_t* data, size_t size) {
  const std::string& dir = fuzz_dir();
  std::error_code ec;
  std::filesystem::remove(dir + "/records.json", ec);
  std::filesystem::remove(dir + "/journal.jsonl", ec);
  std::FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  if (!f) return;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    auto db = tetra::tuner::TuningDatabase::open(dir, "x86-64-avx512-vnni", "halide-14.0.0");
    for (const auto& r : db.all_records()) db.best(r.workload);
    (void)db.note();
  } catch (const tetra::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  read_as("records.json", data, size);
  read_as("journal.jsonl", data, size);
  return 0;
}
