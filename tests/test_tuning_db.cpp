// The tuning database (tuner/database.h): the schema round trip, validation on load (a corrupt file
// is an error and stays untouched), records of other targets and toolchains kept but never used,
// the journal (appends, torn and malformed lines, compaction), writes under concurrent writers and kills,
// lookups, and `tetra db`.
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "importer/error.h"
#include "dsl/target.h"
#include "tests/test_support.h"
#include "tuner/database.h"

namespace fs = std::filesystem;
using namespace tetra;
using namespace tetra::test;
using tuner::TuningDatabase;
using tuner::TuningRecord;
using tuner::WorkloadDesc;

namespace {

const std::string kTarget = "x86-64-avx2";
const std::string kToolchain = dsl::toolchain_id();  // what `tetra db` uses
const std::string kOtherToolchain = "halide-0.0.0-other";

// A QMatMul workload for records of `target`, its format and epilogue written as in its key:
// qmatmul(1, 64, 64, "uint4 per-n zp f16", "bias relu").
WorkloadDesc qmatmul(int64_t M, int64_t K, int64_t N, const std::string& format = "int4 blocked(k,32) f32",
                     const std::string& epilogue = "bias", const std::string& target = kTarget) {
  dsl::QMatMulWorkload w;
  w.M = M, w.K = K, w.N = N;
  std::istringstream words(format);
  for (std::string word; words >> word;) {
    if (word == "uint4")
      w.format.is_signed = false;
    else if (word == "zp")
      w.format.has_zero_point = true;
    else if (word == "f16")
      w.format.f16_scale = true;
    else if (word == "per-n")
      w.format.per_n = true;
    else if (word.rfind("blocked(k,", 0) == 0)
      w.format.k_group = std::stoi(word.substr(10)), w.format.per_n = true;
  }
  w.has_bias = epilogue.find("bias") != std::string::npos;
  if (epilogue.find("relu") != std::string::npos) w.epilogue = dsl::OutputEpilogue::relu();
  WorkloadDesc d = tuner::workload_desc(w, target);
  REQUIRE(d.key == "qmatmul m" + std::to_string(M) + " k" + std::to_string(K) + " n" + std::to_string(N) + " " +
                       format + (epilogue.empty() ? "" : " " + epilogue));
  return d;
}

TuningRecord record(const WorkloadDesc& w, int64_t tile_n, double median_ms, const std::string& target = kTarget) {
  TuningRecord r;
  r.workload = w;
  r.workload.spec.target = target;
  r.target = target;
  r.toolchain = kToolchain;
  r.schedule.template_name = "cpu_int4_gemm";
  r.schedule.knobs = {{"tile_n", tile_n}, {"w_stage", std::string("panel")}};
  r.median_ms = median_ms;
  r.min_ms = median_ms * 0.9;
  r.max_ms = median_ms * 1.2;
  r.runs = 10;
  r.measured_on = "Test CPU";
  r.threads = 4;
  r.measured = true;
  r.timestamp = "2025-01-31T12:00:00Z";
  return r;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A database file from hand-written records (for the cases commit() would never write).
void write_db(const std::string& dir, const nlohmann::json& records, int schema_version = tuner::kSchemaVersion) {
  nlohmann::json j{{"format", "tetra-tuning-db"}, {"schema_version", schema_version}, {"records", records}};
  write_text(dir + "/records.json", j.dump(2));
}

std::string open_error(const std::string& dir) {
  try {
    TuningDatabase::open(dir, kTarget, kToolchain);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("tuning db: records round-trip through the JSON schema", "[db]") {
  std::string dir = temp_dir("db_roundtrip") + "/db";  // missing: an empty database, created on commit
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  CHECK(db.records().empty());
  CHECK(db.note().empty());

  TuningRecord working = record(qmatmul(1, 4096, 4096), 64, 0.4125);
  TuningRecord estimated = record(qmatmul(8, 4096, 4096, "uint4 per-n zp f16", ""), 32, 1.5);
  estimated.measured = false;
  estimated.runs = 0;
  estimated.threads = 0;
  TuningRecord failed = record(qmatmul(1, 4096, 4096), 48, 0);
  failed.error = "Compile: Halide refused the schedule";
  db.commit({working, estimated, failed});
  CHECK(fs::exists(dir + "/journal.jsonl"));
  CHECK_FALSE(fs::exists(dir + "/records.json"));  // until a compaction

  // Read back from the journal, then from records.json after a compaction.
  for (bool compacted : {false, true}) {
    INFO("compacted " << compacted);
    if (compacted) db.compact();
    TuningDatabase again = TuningDatabase::open(dir, kTarget, kToolchain);
    std::vector<TuningRecord> got = again.records();
    REQUIRE(got.size() == 3);
    for (const TuningRecord& want : {working, estimated, failed}) {
      auto it = std::find_if(got.begin(), got.end(), [&](const TuningRecord& r) {
        return r.workload.key == want.workload.key && r.schedule == want.schedule;
      });
      REQUIRE(it != got.end());
      CHECK(it->workload == want.workload);
      CHECK(it->target == want.target);
      CHECK(it->toolchain == want.toolchain);
      CHECK(it->schema_version == tuner::kSchemaVersion);
      CHECK(it->median_ms == want.median_ms);  // exact: shortest round-trip doubles
      CHECK(it->min_ms == want.min_ms);
      CHECK(it->max_ms == want.max_ms);
      CHECK(it->runs == want.runs);
      CHECK(it->measured_on == want.measured_on);
      CHECK(it->threads == want.threads);
      CHECK(it->measured == want.measured);
      CHECK(it->timestamp == want.timestamp);
      CHECK(it->error == want.error);
    }
  }

  // The file is the documented shape: a versioned object with one record per line.
  nlohmann::json file = nlohmann::json::parse(read_text(dir + "/records.json"));
  CHECK(file["format"] == "tetra-tuning-db");
  CHECK(file["schema_version"] == tuner::kSchemaVersion);
  CHECK(file["records"].size() == 3);
  CHECK(file["records"][0]["schedule"]["template"] == "cpu_int4_gemm");

  // The workload of a QMatMul as the runtime describes it.
  dsl::QMatMulWorkload wl;
  wl.M = 1;
  wl.K = 4096;
  wl.N = 4096;
  wl.format.k_group = 32;
  wl.has_bias = true;
  wl.epilogue = dsl::OutputEpilogue::relu();
  WorkloadDesc desc = tuner::workload_desc(wl, kTarget);
  CHECK(desc.key == wl.key());
  CHECK(desc.op() == "qmatmul");
  CHECK(desc.dims == std::map<std::string, int64_t>{{"M", 1}, {"K", 4096}, {"N", 4096}});
  CHECK(desc.spec == dsl::kernel_spec(wl, kTarget));
  // The record holds the spec's JSON, which reads back as the same spec.
  WorkloadDesc back = TuningRecord::from_json(record(desc, 16, 1.0).to_json(), "record").workload;
  CHECK(back == desc);

  // A conv's kernel and strides are part of its spec; a depthwise conv is never the nearest of a
  // grouped one, and the epilogue does not take part.
  dsl::QConvWorkload conv;
  conv.C = conv.M = conv.group = 64;
  conv.H = conv.W = 56;
  conv.KH = conv.KW = 3;
  conv.epilogue.activation = "Relu";
  WorkloadDesc conv_desc = tuner::workload_desc(conv, kTarget);
  CHECK(conv_desc.key == conv.key());
  CHECK(conv_desc.op() == "qconv");
  CHECK(conv_desc.spec.key() == "qconv int4 per-tensor f32 k3x3 s1x1 panel " + kTarget);
  CHECK(conv_desc.dims.at("H") == 56);
  dsl::QConvWorkload bigger = conv;
  bigger.H = bigger.W = 112;
  bigger.epilogue = dsl::OutputEpilogue{};
  CHECK(tuner::workload_distance(conv_desc, tuner::workload_desc(bigger, kTarget)) == Approx(2 * std::log(2.0)));
  dsl::QConvWorkload grouped = conv;
  grouped.group = 32;
  CHECK(std::isinf(tuner::workload_distance(conv_desc, tuner::workload_desc(grouped, kTarget))));
  conv.group = 1;
  CHECK(std::isinf(tuner::workload_distance(conv_desc, tuner::workload_desc(conv, kTarget))));

  CHECK(tuner::utc_timestamp().size() == 20);
  CHECK_FALSE(tuner::host_cpu_model().empty());
}

TEST_CASE("tuning db: a corrupt or invalid file is a clear error and is never overwritten", "[db]") {
  std::string dir = temp_dir("db_corrupt");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);  // opened before the damage
  nlohmann::json good = record(qmatmul(1, 64, 64), 16, 1.0).to_json();
  nlohmann::json missing_target = good;
  missing_target.erase("target");
  nlohmann::json bad_schedule = good;
  bad_schedule["schedule"]["knobs"]["tile_n"] = 1.5;
  nlohmann::json misspelt = good;
  misspelt["median"] = 1.0;

  struct Case {
    std::string name, text, message;
  };
  std::vector<Case> cases = {
      {"truncated", R"({"format": "tetra-tuning-db", "schema_version": 1, "records": [{"sche)", "not valid JSON"},
      {"not a database", R"({"records": []})", "not a tetra tuning database"},
      {"newer schema", R"({"format": "tetra-tuning-db", "schema_version": 99, "records": []})", "newer than this tetra"},
      {"records not an array", R"({"format": "tetra-tuning-db", "schema_version": 1, "records": {}})", "must be an array"},
  };
  auto db_text = [](const nlohmann::json& records) {
    return nlohmann::json{{"format", "tetra-tuning-db"}, {"schema_version", 1}, {"records", records}}.dump();
  };
  cases.push_back({"record without target", db_text({good, missing_target}), "record 1: missing field \"target\""});
  cases.push_back({"bad knob", db_text({good, good, bad_schedule}), "record 2: bad schedule"});
  cases.push_back({"unknown field", db_text(nlohmann::json::array({misspelt})), "record 0: unknown field \"median\""});
  cases.push_back({"record without version", db_text(nlohmann::json::array({nlohmann::json{{"target", kTarget}}})), "record 0"});

  for (const Case& c : cases) {
    SECTION(c.name) {
      std::string path = dir + "/records.json";
      write_text(path, c.text);
      std::string message = open_error(dir);
      INFO(message);
      CHECK_THAT(message, Catch::Contains(path));
      CHECK_THAT(message, Catch::Contains(c.message));
      CHECK_THAT(message, Catch::Contains("left as it is"));
      // A writer that opened the database earlier re-reads the file, fails, and writes nothing.
      CHECK_THROWS_AS(db.commit({record(qmatmul(1, 64, 64), 32, 0.5)}), Error);
      CHECK_THROWS_AS(db.prune({1, true}), Error);
      CHECK(read_text(path) == c.text);
      CHECK_FALSE(fs::exists(path + ".tmp"));
    }
  }
}

TEST_CASE("tuning db: other targets, toolchains and schema versions are skipped with a note and kept", "[db]") {
  std::string dir = temp_dir("db_foreign");
  WorkloadDesc w = qmatmul(1, 4096, 4096);
  nlohmann::json mine = record(w, 64, 2.0).to_json();
  nlohmann::json gpu = record(w, 128, 0.1, "hip-gfx90a").to_json();
  TuningRecord other_halide = record(w, 32, 0.2);
  other_halide.toolchain = kOtherToolchain;
  // A record of an older layout: not read beyond its version, written back exactly as it was.
  nlohmann::json old_layout = {{"schema_version", 0}, {"workload", w.key}, {"config", {{"tile", 8}}}, {"ms", 0.05}};
  write_db(dir, {mine, gpu, other_halide.to_json(), old_layout});

  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  REQUIRE(db.records().size() == 1);
  CHECK(db.records()[0].schedule.get_int("tile_n") == 64);
  CHECK(db.all_records().size() == 3);
  CHECK(db.skipped() == 3);
  INFO(db.note());
  CHECK_THAT(db.note(), Catch::Contains("target hip-gfx90a"));
  CHECK_THAT(db.note(), Catch::Contains("toolchain " + kOtherToolchain));
  CHECK_THAT(db.note(), Catch::Contains("schema version 0"));
  // The faster records of the other target and toolchain are never returned.
  TuningDatabase::Lookup hit = db.best(w);
  REQUIRE(hit.schedule);
  CHECK(hit.schedule->get_int("tile_n") == 64);

  db.commit({record(qmatmul(1, 1024, 1024), 16, 0.3)});
  db.compact();  // the new record moves from the journal into records.json, beside the others
  nlohmann::json file = nlohmann::json::parse(read_text(dir + "/records.json"));
  REQUIRE(file["records"].size() == 5);
  int gpu_seen = 0, other_halide_seen = 0, old_seen = 0;
  for (const nlohmann::json& r : file["records"]) {
    if (r == gpu) gpu_seen++;
    if (r.value("toolchain", "") == kOtherToolchain) other_halide_seen++;
    if (r == old_layout) old_seen++;
  }
  CHECK(gpu_seen == 1);
  CHECK(other_halide_seen == 1);
  CHECK(old_seen == 1);
  CHECK(db.records().size() == 2);
  CHECK(db.skipped() == 3);

  // The same file opened for the GPU target sees the GPU record only.
  TuningDatabase for_gpu = TuningDatabase::open(dir, "hip-gfx90a", kToolchain);
  REQUIRE(for_gpu.records().size() == 1);
  CHECK(for_gpu.best(w).schedule->get_int("tile_n") == 128);
}

TEST_CASE("tuning db: one record per workload, target, toolchain and schedule, the better kept", "[db]") {
  std::string dir = temp_dir("db_dedupe");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  WorkloadDesc w = qmatmul(1, 512, 512);
  db.commit({record(w, 16, 2.0)});
  db.commit({record(w, 16, 1.0), record(w, 16, 3.0)});  // the same schedule measured again
  TuningRecord failed_again = record(w, 16, 0);
  failed_again.error = "Run: timed out";
  db.commit({failed_again});  // a failure never replaces a working measurement
  TuningRecord estimate = record(w, 16, 0.01);
  estimate.measured = false;
  db.commit({estimate});  // nor does an estimate
  REQUIRE(db.records().size() == 1);
  CHECK(db.records()[0].median_ms == 1.0);
  CHECK(db.records()[0].measured);
  db.commit({record(w, 32, 1.5), record(w, 16, 1.0, "x86-64-avx512")});  // another schedule, another target
  CHECK(db.records().size() == 2);
  CHECK(db.all_records().size() == 3);
}

TEST_CASE("tuning db: concurrent writers lose no records", "[db]") {
  std::string dir = temp_dir("db_concurrent");
  constexpr int kWriters = 4, kCommits = 25;
  std::vector<pid_t> children;
  for (int writer = 0; writer < kWriters; ++writer) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child: no Catch macros, and _exit so that no atexit handler (temp folder cleanup) runs.
      int status = 0;
      try {
        TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
        for (int i = 0; i < kCommits; ++i) {
          db.commit({record(qmatmul(1 + writer, 256, 256), 8 + i, 1.0 + i)});
          if (writer == 0 && i % 5 == 4) db.compact();  // rewrites records.json while the others append
        }
      } catch (...) {
        status = 1;
      }
      _exit(status);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  CHECK(db.records().size() == kWriters * kCommits);
  CHECK_FALSE(fs::exists(dir + "/records.json.tmp"));
  db.compact();
  CHECK(read_text(dir + "/journal.jsonl").empty());
  CHECK(TuningDatabase::open(dir, kTarget, kToolchain).records().size() == kWriters * kCommits);
}

TEST_CASE("tuning db: a writer killed mid-write leaves the old file intact", "[db]") {
  std::string dir = temp_dir("db_kill");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  db.commit({record(qmatmul(1, 128, 128), 16, 1.0)});
  std::string before = read_text(dir + "/records.json");

  SECTION("a partly written temp file is never read and is replaced by the next commit") {
    std::string tmp = dir + "/records.json.tmp";
    write_text(tmp, before.substr(0, before.size() / 2));  // what a killed writer leaves
    TuningDatabase reopened = TuningDatabase::open(dir, kTarget, kToolchain);
    CHECK(reopened.records().size() == 1);
    CHECK(read_text(dir + "/records.json") == before);
    reopened.commit({record(qmatmul(1, 256, 256), 16, 1.0)});
    reopened.compact();  // the next rewrite of records.json replaces it
    CHECK_FALSE(fs::exists(tmp));
    CHECK(TuningDatabase::open(dir, kTarget, kToolchain).records().size() == 2);
  }

  SECTION("SIGKILL at random moments of a commit loop") {
    for (int round = 0; round < 5; ++round) {
      size_t had = TuningDatabase::open(dir, kTarget, kToolchain).records().size();
      pid_t pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        try {
          TuningDatabase child = TuningDatabase::open(dir, kTarget, kToolchain);
          for (int i = 0;; ++i) {
            child.commit({record(qmatmul(1, 64, 64), 1000 * (round + 1) + i, 1.0)});
            if (i % 8 == 7) child.compact();  // killed mid-append or mid-compaction
          }
        } catch (...) {
        }
        _exit(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + 7 * round));
      kill(pid, SIGKILL);
      int status = 0;
      REQUIRE(waitpid(pid, &status, 0) == pid);
      CHECK(WIFSIGNALED(status));
      // Whatever it was doing, the file is whole: the old records and the commits that finished.
      TuningDatabase after = TuningDatabase::open(dir, kTarget, kToolchain);
      CHECK(after.records().size() >= had);
    }
    // The lock died with the writer: the next commit does not wait.
    db.commit({record(qmatmul(1, 32, 32), 16, 1.0)});
  }
}

namespace {

struct Stat {
  ino_t inode = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const Stat& o) const { return inode == o.inode && size == o.size && mtime_ns == o.mtime_ns; }
};

Stat stat_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return {st.st_ino, st.st_size, int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// The journal's lines; a last line without its newline comes back as it is.
std::vector<std::string> journal_lines(const std::string& dir) {
  std::vector<std::string> lines;
  std::istringstream in(read_text(dir + "/journal.jsonl"));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void append_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::app) << text;
}

}  // namespace

TEST_CASE("tuning db: a commit appends its records to the journal and leaves records.json alone", "[db]") {
  std::string dir = temp_dir("db_journal");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  db.commit({record(qmatmul(1, 64, 64), 16, 1.0), record(qmatmul(1, 64, 64), 32, 2.0)});
  CHECK_FALSE(fs::exists(dir + "/records.json"));
  CHECK(journal_lines(dir).size() == 2);
  db.compact();
  REQUIRE(fs::exists(dir + "/records.json"));
  CHECK(journal_lines(dir).empty());
  const Stat before = stat_of(dir + "/records.json");
  const std::string text = read_text(dir + "/records.json");

  db.commit({record(qmatmul(1, 128, 128), 16, 1.0)});
  CHECK(stat_of(dir + "/records.json") == before);
  CHECK(read_text(dir + "/records.json") == text);
  std::vector<std::string> lines = journal_lines(dir);
  REQUIRE(lines.size() == 1);
  CHECK(TuningRecord::from_json(nlohmann::json::parse(lines[0]), "line 1").workload.key == qmatmul(1, 128, 128).key);
  CHECK(db.records().size() == 3);

  // Another writer's commits reach this object at its next commit, and every reader sees them all.
  TuningDatabase other = TuningDatabase::open(dir, kTarget, kToolchain);
  other.commit({record(qmatmul(1, 256, 256), 16, 1.0)});
  db.commit({record(qmatmul(1, 512, 512), 16, 1.0)});
  CHECK(db.records().size() == 5);
  CHECK(journal_lines(dir).size() == 3);
  CHECK(TuningDatabase::open(dir, kTarget, kToolchain).records().size() == 5);
  // And after the other writer compacts (records.json replaced), this one re-reads all of it.
  other.compact();
  db.commit({record(qmatmul(1, 1024, 1024), 16, 1.0)});
  CHECK(db.records().size() == 6);
  CHECK(journal_lines(dir).size() == 1);
  CHECK(TuningDatabase::open(dir, kTarget, kToolchain).records().size() == 6);

  // A record measured again with a better time is a second line; the better one is kept.
  db.commit({record(qmatmul(1, 64, 64), 16, 0.5)});
  TuningDatabase reopened = TuningDatabase::open(dir, kTarget, kToolchain);
  CHECK(reopened.records().size() == 6);
  CHECK(reopened.best(qmatmul(1, 64, 64)).record->median_ms == 0.5);
}

TEST_CASE("tuning db: a torn last line is skipped by readers and cut off by the next writer", "[db]") {
  std::string dir = temp_dir("db_torn");
  TuningDatabase::open(dir, kTarget, kToolchain).commit({record(qmatmul(1, 64, 64), 16, 1.0)});
  std::string whole = record(qmatmul(1, 128, 128), 16, 1.0).to_json().dump();
  append_text(dir + "/journal.jsonl", whole.substr(0, whole.size() / 2));  // a writer killed mid-append

  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  CHECK(db.records().size() == 1);
  db.commit({record(qmatmul(1, 256, 256), 16, 1.0)});
  std::vector<std::string> lines = journal_lines(dir);
  REQUIRE(lines.size() == 2);
  for (const std::string& line : lines) CHECK_NOTHROW(nlohmann::json::parse(line));
  CHECK(read_text(dir + "/journal.jsonl").back() == '\n');
  CHECK(TuningDatabase::open(dir, kTarget, kToolchain).records().size() == 2);
}

TEST_CASE("tuning db: a malformed journal line is an error naming the file and line, and nothing changes", "[db]") {
  std::string dir = temp_dir("db_bad_line");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  db.commit({record(qmatmul(1, 64, 64), 16, 1.0), record(qmatmul(1, 64, 64), 32, 1.0)});
  nlohmann::json missing_target = record(qmatmul(1, 128, 128), 16, 1.0).to_json();
  missing_target.erase("target");
  for (const auto& [name, line, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"not JSON", "{\"schema_version\": 1, \"work", "not valid JSON"},
           {"missing field", missing_target.dump(), "missing field \"target\""},
           {"no version", "[1, 2]", "integer \"schema_version\""}}) {
    SECTION(name) {
      const std::string journal = dir + "/journal.jsonl";
      append_text(journal, line + "\n");
      const std::string before = read_text(journal);
      std::string error = open_error(dir);
      INFO(error);
      CHECK_THAT(error, Catch::Contains(journal + ": line 3: "));
      CHECK_THAT(error, Catch::Contains(message));
      CHECK_THAT(error, Catch::Contains("left as it is"));
      CHECK_THROWS_AS(db.commit({record(qmatmul(1, 256, 256), 16, 1.0)}), Error);
      CHECK_THROWS_AS(db.compact(), Error);
      CHECK(read_text(journal) == before);
      CHECK_FALSE(fs::exists(dir + "/records.json"));
    }
  }
}

TEST_CASE("tuning db: compaction keeps every record, and replaying a compacted journal changes nothing", "[db]") {
  std::string dir = temp_dir("db_compact");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  TuningRecord failed = record(qmatmul(1, 64, 64), 99, 0);
  failed.error = "Run: timed out";
  db.commit({record(qmatmul(1, 64, 64), 16, 1.0), failed, record(qmatmul(1, 64, 64), 8, 0.5, "hip-gfx90a")});
  // A record of another schema version, as a newer tetra would append it: kept verbatim.
  nlohmann::json newer = {{"schema_version", tuner::kSchemaVersion + 1}, {"workload", "w"}, {"ms", 0.1}};
  append_text(dir + "/journal.jsonl", newer.dump() + "\n");
  db.commit({record(qmatmul(1, 128, 128), 16, 2.0)});
  const std::string journal = read_text(dir + "/journal.jsonl");
  REQUIRE(journal_lines(dir).size() == 5);

  db.compact();
  CHECK(read_text(dir + "/journal.jsonl").empty());
  const std::string compacted = read_text(dir + "/records.json");
  nlohmann::json file = nlohmann::json::parse(compacted);
  CHECK(file["records"].size() == 5);
  TuningDatabase after = TuningDatabase::open(dir, kTarget, kToolchain);
  CHECK(after.all_records().size() == 4);
  CHECK(after.records().size() == 3);
  REQUIRE(after.other_schema_records().size() == 1);
  CHECK(after.other_schema_records()[0] == newer);

  // A compaction killed after its rename, before it emptied the journal: the lines replay onto
  // records.json, which already holds them.
  write_text(dir + "/journal.jsonl", journal);
  TuningDatabase replayed = TuningDatabase::open(dir, kTarget, kToolchain);
  CHECK(replayed.all_records().size() == 4);
  CHECK(replayed.other_schema_records().size() == 1);
  replayed.compact();
  CHECK(read_text(dir + "/records.json") == compacted);

  // A journal past kCompactJournalBytes is compacted by the commit that grows it there.
  std::vector<TuningRecord> many;
  for (int i = 0; int64_t(many.size()) * 300 < tuner::kCompactJournalBytes; ++i)
    many.push_back(record(qmatmul(1, 2048, 2048), 1000 + i, 1.0));
  replayed.commit(many);
  CHECK(read_text(dir + "/journal.jsonl").empty());
  CHECK(TuningDatabase::open(dir, kTarget, kToolchain).all_records().size() == 4 + many.size());
}

TEST_CASE("tuning db: lookup is exact, then the nearest shape of this target, then the default", "[db]") {
  std::string dir = temp_dir("db_lookup");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  TuningRecord failed_fast = record(qmatmul(1, 4096, 4096), 99, 0.001);
  failed_fast.error = "Compile: refused";
  TuningRecord estimated_fast = record(qmatmul(1, 4096, 4096), 77, 0.002);
  estimated_fast.measured = false;
  db.commit({
      record(qmatmul(1, 4096, 4096), 64, 0.5),
      record(qmatmul(1, 4096, 4096), 32, 0.4),  // the best working measurement
      failed_fast,                              // failed: never returned
      estimated_fast,                           // estimated: loses to a measurement
      record(qmatmul(1, 4096, 11008), 128, 1.0),
      record(qmatmul(16, 4096, 4096), 16, 2.0),
      record(qmatmul(1, 2048, 2048), 8, 0.1, "x86-64-avx512"),             // another target
      record(qmatmul(1, 2048, 2048, "int4 per-n f32", "bias"), 24, 0.1),  // another format
      record(qmatmul(1, 2048, 2048, "int4 blocked(k,32) f32", ""), 40, 0.1),  // another epilogue
  });

  TuningDatabase::Lookup exact = db.best(qmatmul(1, 4096, 4096));
  CHECK(exact.source == "exact");
  REQUIRE(exact.schedule);
  CHECK(exact.schedule->get_int("tile_n") == 32);
  REQUIRE(exact.record);
  CHECK(exact.record->median_ms == 0.4);

  // m1 k4096 n8192: |log(8192/4096)| = 0.69 from n4096, |log(11008/8192)| = 0.30 from n11008.
  TuningDatabase::Lookup nearest = db.best(qmatmul(1, 4096, 8192));
  CHECK(nearest.source == "nearest: " + qmatmul(1, 4096, 11008).key);
  CHECK(nearest.schedule->get_int("tile_n") == 128);
  // m12: closer to m16 (0.29) than to m1 (2.48).
  CHECK(db.best(qmatmul(12, 4096, 4096)).schedule->get_int("tile_n") == 16);
  // Exact keys of another target, format or epilogue are never used: the nearest is of this target.
  TuningDatabase::Lookup other = db.best(qmatmul(1, 2048, 2048));
  CHECK(other.source == "nearest: " + qmatmul(1, 4096, 4096).key);
  CHECK(other.schedule->get_int("tile_n") == 32);

  // Nothing of the same op, format and epilogue: the template default.
  for (const WorkloadDesc& w : {qmatmul(1, 4096, 4096, "uint4 blocked(k,64) zp f32", "bias"),
                                qmatmul(1, 4096, 4096, "int4 blocked(k,32) f32", "relu")}) {
    TuningDatabase::Lookup none = db.best(w);
    CHECK(none.source == "default");
    CHECK_FALSE(none.schedule);
    CHECK(none.record == nullptr);
  }
  dsl::QConvWorkload conv;
  conv.C = conv.M = conv.group = 64;
  conv.H = conv.W = conv.OH = conv.OW = 56;
  conv.KH = conv.KW = 3;
  conv.has_bias = true;
  CHECK(db.best(tuner::workload_desc(conv, kTarget)).source == "default");  // another op

  // A database opened for the other target sees only its own record.
  TuningDatabase avx512 = TuningDatabase::open(dir, "x86-64-avx512", kToolchain);
  CHECK(avx512.best(qmatmul(1, 4096, 4096, "int4 blocked(k,32) f32", "bias", "x86-64-avx512"))
            .schedule->get_int("tile_n") == 8);
  CHECK(TuningDatabase::open(dir, kTarget, kOtherToolchain).best(qmatmul(1, 4096, 4096)).source == "default");
}

TEST_CASE("tuning db: an estimate never outranks a measurement, exact or nearest", "[db]") {
  std::string dir = temp_dir("db_estimated");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  TuningRecord estimated_exact = record(qmatmul(1, 4096, 4096), 77, 0.001);
  estimated_exact.measured = false;
  db.commit({estimated_exact, record(qmatmul(1, 4096, 8192), 32, 0.9)});
  // The measured nearest shape wins over the estimate of this very shape.
  TuningDatabase::Lookup hit = db.best(qmatmul(1, 4096, 4096));
  CHECK(hit.source == "nearest: " + qmatmul(1, 4096, 8192).key);
  CHECK(hit.schedule->get_int("tile_n") == 32);
  // With no measurement anywhere near, the estimate is better than the template default.
  TuningRecord estimated_other = record(qmatmul(1, 4096, 4096, "int4 per-n f32"), 8, 0.001);
  estimated_other.measured = false;
  db.commit({estimated_other});
  CHECK(db.best(qmatmul(1, 4096, 4096, "int4 per-n f32")).source == "exact (estimated)");
}

TEST_CASE("tuning db: a GPU's records from a GPU of its compute units come first, others as nearest", "[db]") {
  CHECK(tuner::compute_units_in("AMD Instinct MI300X (gfx942:sramecc+:xnack-, 304 CUs, HIP runtime 60032830)") == 304);
  CHECK(tuner::compute_units_in("NVIDIA H200 (sm_90, 132 SMs)") == 132);
  CHECK(tuner::compute_units_in("pthread-haswell-AMD EPYC") == 0);
  std::string dir = temp_dir("db_compute_units");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  auto on = [](TuningRecord r, const std::string& gpu) {
    r.measured_on = gpu;
    return r;
  };
  const std::string mi300x = "AMD Instinct MI300X (gfx942:sramecc+:xnack-, 304 CUs, HIP runtime 60032830)";
  const std::string mi300a = "AMD Instinct MI300A (gfx942:sramecc+:xnack-, 228 CUs, HIP runtime 60032830)";
  db.commit({on(record(qmatmul(1, 4096, 4096), 64, 0.2), mi300a),      // faster, but on another GPU
             on(record(qmatmul(1, 4096, 4096), 32, 0.3), mi300x),      // this GPU's own
             on(record(qmatmul(1, 4096, 11008), 128, 0.5), mi300a)});  // only from another GPU
  TuningDatabase::Lookup own = db.best(qmatmul(1, 4096, 4096), 304);
  CHECK(own.source == "exact");
  CHECK(own.schedule->get_int("tile_n") == 32);
  // No record from a GPU of 304 CUs for this shape except a nearest one: that one, from this GPU.
  CHECK(db.best(qmatmul(1, 4096, 11008), 304).schedule->get_int("tile_n") == 32);
  // Another count: the other GPU's exact record, said to be nearest.
  TuningDatabase::Lookup other = db.best(qmatmul(1, 4096, 4096), 120);
  CHECK(other.schedule->get_int("tile_n") == 64);
  CHECK(other.source == "exact (as nearest: measured on 228 compute units, this GPU has 120)");
  // Without a GPU to match, the fastest record, as before.
  CHECK(db.best(qmatmul(1, 4096, 4096)).source == "exact");
  CHECK(db.best(qmatmul(1, 4096, 4096)).schedule->get_int("tile_n") == 64);
}

TEST_CASE("tuning db: a record without \"measured\" reads as measured", "[db]") {
  std::string dir = temp_dir("db_measured_field");
  nlohmann::json old_record = record(qmatmul(1, 64, 64), 16, 0.5).to_json();
  old_record.erase("measured");
  write_db(dir, nlohmann::json::array({old_record}));
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  REQUIRE(db.records().size() == 1);
  CHECK(db.records()[0].measured);
}

TEST_CASE("tuning db: prune keeps the N best per workload and drops failed candidates", "[db]") {
  std::string dir = temp_dir("db_prune");
  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  WorkloadDesc a = qmatmul(1, 512, 512), b = qmatmul(1, 1024, 1024);
  TuningRecord failed = record(a, 99, 0);
  failed.error = "Compile: refused";
  db.commit({record(a, 8, 3.0), record(a, 16, 1.0), record(a, 32, 2.0), failed, record(b, 8, 5.0),
             record(a, 8, 9.0, "x86-64-avx512"), record(a, 16, 8.0, "x86-64-avx512")});
  CHECK(db.prune({2, false}) == 1);  // a: 8 goes; avx512 keeps both; the failed record stays
  CHECK(db.records().size() == 4);
  CHECK(db.prune({0, true}) == 1);
  std::vector<TuningRecord> left = db.records();
  REQUIRE(left.size() == 3);
  for (const TuningRecord& r : left) {
    CHECK_FALSE(r.failed());
    if (r.workload.key == a.key) CHECK(r.schedule.get_int("tile_n") != 8);
  }
  CHECK(db.all_records().size() == 5);
}

TEST_CASE("tetra db: list, show, merge, prune, export and their errors", "[db][cli]") {
  std::string root = temp_dir("db_cli");
  std::string a = root + "/a", b = root + "/b";
  TuningRecord failed = record(qmatmul(1, 512, 512), 99, 0);
  failed.error = "Compile: refused";
  TuningDatabase::open(a, kTarget, kToolchain)
      .commit({record(qmatmul(1, 512, 512), 16, 1.0), failed, record(qmatmul(1, 512, 512), 8, 0.2, "hip-gfx90a")});
  TuningDatabase::open(b, kTarget, kToolchain)
      .commit({record(qmatmul(1, 512, 512), 32, 0.5), record(qmatmul(4, 512, 512), 16, 2.0)});
  std::string cli = tetra_cli() + " db ";
  std::string key = "'" + qmatmul(1, 512, 512).key + "'";
  std::string out;

  REQUIRE(run_command(cli + "list " + a + " --target " + kTarget, &out) == 0);
  INFO(out);
  CHECK_THAT(out, Catch::Contains("2 records for x86-64-avx2, " + kToolchain));
  CHECK_THAT(out, Catch::Contains("failed: Compile: refused"));
  CHECK_THAT(out, Catch::Contains("note: "));  // the hip record was skipped
  REQUIRE(run_command(cli + "list " + a + " --all-targets", &out) == 0);
  CHECK_THAT(out, Catch::Contains("3 records (all targets)"));
  CHECK_THAT(out, Catch::Contains("[hip-gfx90a, " + kToolchain + "]"));
  REQUIRE(run_command("(" + cli + "list " + a + " --all-targets --json 2>/dev/null)", &out) == 0);  // no note
  CHECK(nlohmann::json::parse(out).size() == 3);

  REQUIRE(run_command(cli + "show " + a + " " + key + " --target " + kTarget, &out) == 0);
  CHECK_THAT(out, Catch::Contains("lookup for x86-64-avx2, " + kToolchain + ": exact"));
  CHECK_THAT(out, Catch::Contains("\"tile_n\":16"));
  CHECK_THAT(out, Catch::Contains("3 records (all targets)"));
  REQUIRE(run_command(cli + "show " + a + " " + key + " --target hip:gfx90a", &out) == 0);  // either spelling
  CHECK_THAT(out, Catch::Contains("lookup for hip-gfx90a"));
  CHECK_THAT(out, Catch::Contains("\"tile_n\":8"));

  REQUIRE(run_command(cli + "merge " + a + " " + b, &out) == 0);
  CHECK_THAT(out, Catch::Contains("3 -> 5 records"));
  REQUIRE(run_command(cli + "compact " + a, &out) == 0);
  CHECK_THAT(out, Catch::Contains("compacted 5 records into " + a + "/records.json"));
  CHECK(read_text(a + "/journal.jsonl").empty());
  REQUIRE(run_command(cli + "prune " + a + " --keep 1 --drop-failed", &out) == 0);
  CHECK_THAT(out, Catch::Contains("removed 2 records"));  // the failed one and tile_n 16 (slower than 32)
  TuningDatabase merged = TuningDatabase::open(a, kTarget, kToolchain);
  CHECK(merged.records().size() == 2);
  CHECK(merged.best(qmatmul(1, 512, 512)).schedule->get_int("tile_n") == 32);

  std::string exported = root + "/gpu.json";
  REQUIRE(run_command(cli + "export " + a + " -o " + exported + " --target hip-gfx90a", &out) == 0);
  CHECK_THAT(out, Catch::Contains("wrote 1 records for hip-gfx90a"));
  fs::create_directories(root + "/c");
  fs::copy_file(exported, root + "/c/records.json");  // an exported file is a database
  CHECK(TuningDatabase::open(root + "/c", "hip-gfx90a", kToolchain).records().size() == 1);
  REQUIRE(run_command(cli + "export " + a + " -o " + root + "/all.json", &out) == 0);
  CHECK_THAT(out, Catch::Contains("wrote 3 records to"));

  // Errors: exit 2 with one clear line, nothing written.
  std::string corrupt = root + "/corrupt";
  fs::create_directories(corrupt);
  write_text(corrupt + "/records.json", "{\"format\": \"tetra-tuning-db\", \"schema_vers");
  struct Bad {
    std::string args, message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"list " + root + "/missing", "no tuning database folder"},
           {"list " + corrupt, "not valid JSON"},
           {"show " + a + " 'qmatmul m3 k3 n3 int4 f32'", "no records for workload"},
           {"merge " + a + " " + corrupt, "not valid JSON"},
           {"merge " + corrupt + " " + b, "not valid JSON"},
           {"prune " + a, "give --keep N and/or --drop-failed"},
           {"prune " + a + " --keep -1", "--keep must be positive"},
           {"export " + a + " -o " + root + "/no/such/dir/x.json", "cannot create"},
           {"list " + a + " --target not-a-target", "bad target"},
           {"compact " + corrupt, "not valid JSON"},
           {"compact " + root + "/missing", "no tuning database folder"},
       }) {
    int rc = run_command(cli + bad.args, &out);
    INFO(bad.args << "\n" << out);
    CHECK(rc == 2);
    CHECK_THAT(out, Catch::Contains("tetra: error: "));
    CHECK_THAT(out, Catch::Contains(bad.message));
  }
  CHECK(read_text(corrupt + "/records.json") == "{\"format\": \"tetra-tuning-db\", \"schema_vers");
  CHECK(run_command(cli + "list", &out) != 0);  // usage error from the parser
}

TEST_CASE("tuning db: version-1 records are read as current ones when their key rebuilds the workload", "[db]") {
  std::string dir = temp_dir("db_v1");
  auto v1 = [](const std::string& key, const std::string& op, const nlohmann::json& dims, const std::string& format,
               const std::string& epilogue, int64_t tile) {
    return nlohmann::json{
        {"workload", {{"key", key}, {"op", op}, {"dims", dims}, {"format", format}, {"epilogue", epilogue}}},
        {"target", kTarget},
        {"toolchain", kToolchain},
        {"schema_version", 1},
        {"schedule", {{"template", "cpu_int4_gemm"}, {"knobs", {{"tile_n", tile}}}}},
        {"cost", {{"median_ms", 1.0}, {"min_ms", 1.0}, {"max_ms", 1.0}, {"runs", 10}}},
        {"measured", true},
        {"measured_on", {{"device", "Test CPU"}, {"threads", 2}}},
        {"timestamp", "2025-01-31T12:00:00Z"}};
  };
  const std::string conv_key = "qconv n1 c32 h40 w40 m32 g32 k3x3 s2x2 d1x1 p1,1,1,1 uint4 blocked(1) zp f16 b16 bias";
  nlohmann::json records = {
      v1("qmatmul m4 k256 n512 uint4 k-groups(64) zp f16 bias relu a8", "qmatmul", {{"M", 4}, {"K", 256}, {"N", 512}},
         "uint4 k-groups(64) zp f16 a8", "bias relu", 24),
      v1("qmatmul m1 k64 n64 f16 weight", "qmatmul", {{"M", 1}, {"K", 64}, {"N", 64}}, "f16 weight", "", 8),
      v1(conv_key, "qconv", {{"N", 1}, {"C", 32}}, "k3x3 s2x2 depthwise uint4 blocked(1) zp f16", "bias", 16),
      // A key this tetra would not write: kept as it is, never used.
      v1("qmatmul m1 k64 n64 int4 per-tile f32", "qmatmul", {{"M", 1}}, "int4 per-tile f32", "", 4)};
  write_db(dir, records, 1);

  TuningDatabase db = TuningDatabase::open(dir, kTarget, kToolchain);
  REQUIRE(db.records().size() == 3);
  dsl::QMatMulWorkload int8;
  int8.M = 4, int8.K = 256, int8.N = 512;
  int8.format.is_signed = false, int8.format.has_zero_point = true, int8.format.f16_scale = true;
  int8.format.k_group = 64;
  int8.has_bias = true, int8.epilogue = dsl::OutputEpilogue::relu(), int8.int8_activations = true;
  TuningDatabase::Lookup hit = db.best(tuner::workload_desc(int8, kTarget));
  CHECK(hit.source == "exact");
  CHECK(hit.schedule->get_int("tile_n") == 24);
  CHECK(hit.record->workload.spec.layout == dsl::LayoutKind::Vnni);

  dsl::QMatMulWorkload f16;
  f16.M = 1, f16.K = f16.N = 64;
  f16.format.float_bits = 16;
  CHECK(db.best(tuner::workload_desc(f16, kTarget)).schedule->get_int("tile_n") == 8);

  dsl::QConvWorkload conv;
  conv.C = conv.M = conv.group = 32, conv.H = conv.W = 40, conv.KH = conv.KW = 3, conv.SH = conv.SW = 2;
  conv.pad_top = conv.pad_left = conv.pad_bottom = conv.pad_right = 1;
  conv.OH = conv.OW = 20;
  conv.format.is_signed = false, conv.format.has_zero_point = true, conv.format.f16_scale = true;
  conv.format.grid = dsl::ConvInt4Format::Grid::Blocked, conv.format.axis = 1, conv.block = 16;
  conv.has_bias = true;
  REQUIRE(conv.key() == conv_key);
  CHECK(db.best(tuner::workload_desc(conv, kTarget)).schedule->get_int("tile_n") == 16);

  // Compaction writes the upgraded records in the current version and the other one as it was.
  db.compact();
  nlohmann::json file = nlohmann::json::parse(read_text(dir + "/records.json"));
  CHECK(file["schema_version"] == tuner::kSchemaVersion);
  int current = 0;
  for (const nlohmann::json& r : file["records"]) current += r["schema_version"] == tuner::kSchemaVersion;
  CHECK(current == 3);
  CHECK(file["records"].size() == 4);
  CHECK(file["records"].dump().find("per-tile") != std::string::npos);
}
