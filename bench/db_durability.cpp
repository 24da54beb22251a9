// Durability of the tuning database under concurrent writers and kill -9 (docs/tuning_db.md).
//   tetra_db_durability DIR [--writers 3] [--kills 35] [--seconds 20]
// Starts WRITERS processes that each commit one record at a time to DIR, as `tetra tune` does after
// every measurement, and report each commit once it has returned. Meanwhile it kills a random
// writer with SIGKILL at a random moment, KILLS times, and starts a new one in its place; after every
// kill it opens the database (it must parse). At the end every reported record must be in the file.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "importer/error.h"
#include "tuner/database.h"

using tetra::tuner::TuningDatabase;
using tetra::tuner::TuningRecord;

namespace {

const char* kTarget = "x86-64-avx2";
const char* kToolchain = "halide-14.0.0";

TuningRecord record_for(int writer, int serial) {
  TuningRecord r;
  tetra::dsl::QMatMulWorkload w;  // "qmatmul m1 kK n64 int4 blocked(k,32) f32", K per writer
  w.K = 64 * (writer + 1);
  w.N = 64;
  w.format.k_group = 32;
  w.format.per_n = true;
  r.workload = tetra::tuner::workload_desc(w, kTarget);
  r.target = kTarget;
  r.toolchain = kToolchain;
  r.schedule.template_name = "cpu_int4_gemm";
  r.schedule.knobs = {{"tile_n", int64_t(serial)}};  // one schedule per commit: no two records merge
  r.median_ms = r.min_ms = r.max_ms = 1.0;
  r.runs = 1;
  r.measured_on = "durability test";
  r.timestamp = tetra::tuner::utc_timestamp();
  return r;
}

// A writer process: commits records `first`, `first + 1`, ... and appends "writer serial\n" to
// `ack_path` after each commit has returned. Never returns.
[[noreturn]] void writer_main(const std::string& dir, int writer, int first, const std::string& ack_path) {
  int fd = open(ack_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) _exit(2);
  try {
    TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
    for (int serial = first;; ++serial) {
      db.commit({record_for(writer, serial)});
      std::string line = std::to_string(writer) + " " + std::to_string(serial) + "\n";
      if (write(fd, line.data(), line.size()) != ssize_t(line.size())) _exit(2);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "writer %d: %s\n", writer, e.what());
  }
  _exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [--writers N] [--kills N] [--seconds S]\n", argv[0]);
    return 2;
  }
  std::string dir = argv[1];
  int writers = 3, kills = 35;
  double seconds = 20;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--writers") writers = std::atoi(argv[i + 1]);
    else if (flag == "--kills") kills = std::atoi(argv[i + 1]);
    else if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  const std::string ack_dir = dir + ".acks";  // one file per writer process
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(ack_dir);
  std::filesystem::create_directories(ack_dir);

  std::mt19937 rng(12345);
  std::vector<pid_t> pids(writers);
  int next_serial = 0;  // each writer process starts at a fresh serial: replacements never reuse one
  auto start_writer = [&](int w) {
    int first = (next_serial += 1000000);
    pid_t pid = fork();
    if (pid == 0) writer_main(dir, w, first, ack_dir + "/" + std::to_string(first) + ".log");
    pids[w] = pid;
  };
  for (int w = 0; w < writers; ++w) start_writer(w);

  int unreadable = 0;
  auto pause = std::chrono::duration<double>(seconds / std::max(kills, 1));
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(pause * std::uniform_real_distribution<double>(0.2, 1.8)(rng));
    int w = std::uniform_int_distribution<int>(0, writers - 1)(rng);
    kill(pids[w], SIGKILL);
    waitpid(pids[w], nullptr, 0);
    try {
      TuningDatabase::open(dir, kTarget, kToolchain);
    } catch (const tetra::Error& e) {
      std::fprintf(stderr, "after kill %d: %s\n", k + 1, e.what());
      unreadable++;
    }
    start_writer(w);
  }
  for (pid_t pid : pids) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }

  std::set<std::pair<int, int64_t>> acknowledged;
  for (const auto& entry : std::filesystem::directory_iterator(ack_dir)) {
    std::ifstream in(entry.path());
    int w = 0;
    int64_t serial = 0;
    while (in >> w >> serial) acknowledged.insert({w, serial});
  }
  std::set<std::pair<int, int64_t>> stored;
  for (const TuningRecord& r : TuningDatabase::open(dir, kTarget, kToolchain).records())
    stored.insert({int(r.workload.dims.at("K") / 64 - 1), r.schedule.get_int("tile_n")});
  int lost = 0;
  for (const auto& a : acknowledged) lost += !stored.count(a);
  std::printf("writers %d, kills %d, commits acknowledged %zu, records stored %zu, lost %d, unreadable after a kill %d\n",
              writers, kills, acknowledged.size(), stored.size(), lost, unreadable);
  return lost == 0 && unreadable == 0 ? 0 : 1;
}
