// Merging tuning databases (tuner/db_merge.h, `tetra db merge`): the result depends on the set of
// records only (any order, merging twice changes nothing), records of one schedule measured on
// different hardware are all kept, and a corrupt or missing input is refused by name with OUT untouched.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "importer/error.h"
#include "tests/test_support.h"
#include "tuner/db_merge.h"

namespace fs = std::filesystem;
using namespace tetra;
using namespace tetra::test;
using tuner::TuningDatabase;
using tuner::TuningRecord;
using tuner::WorkloadDesc;

namespace {

const std::string kTarget = "x86-64-avx2";
const std::string kToolchain = "halide-14.0.0";

WorkloadDesc qmatmul(int64_t M) {
  dsl::QMatMulWorkload w;  // "qmatmul mM k512 n512 int4 blocked(k,32) f32"
  w.M = M;
  w.K = w.N = 512;
  w.format.k_group = 32;
  w.format.per_n = true;
  return tuner::workload_desc(w, kTarget);
}

TuningRecord record(int64_t M, int64_t tile_n, double median_ms, const std::string& measured_on = "Test CPU") {
  TuningRecord r;
  r.workload = qmatmul(M);
  r.target = kTarget;
  r.toolchain = kToolchain;
  r.schedule.template_name = "cpu_int4_gemm";
  r.schedule.knobs = {{"tile_n", tile_n}};
  r.median_ms = r.min_ms = r.max_ms = median_ms;
  r.runs = 10;
  r.measured_on = measured_on;
  r.threads = 4;
  r.timestamp = "2025-01-31T12:00:00Z";
  return r;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> dumps(const std::vector<TuningRecord>& records) {
  std::vector<std::string> out;
  for (const TuningRecord& r : records) out.push_back(r.to_json().dump());
  return out;
}

// Three shard databases that overlap: a repeated measurement, a better one, a failure and another target.
std::vector<std::string> make_shards(const std::string& root) {
  TuningRecord failed = record(4, 64, 0);
  failed.error = "Run: timed out";
  TuningRecord gpu = record(1, 16, 0.1);
  gpu.target = gpu.workload.spec.target = "hip-gfx90a";
  std::vector<std::vector<TuningRecord>> contents = {
      {record(1, 16, 1.0), record(1, 32, 2.0), gpu},
      {record(1, 16, 0.8), record(4, 16, 3.0), failed},
      {record(4, 64, 2.5), record(1, 32, 2.0), record(4, 16, 3.5)},
  };
  std::vector<std::string> dirs;
  for (size_t i = 0; i < contents.size(); ++i) {
    dirs.push_back(root + "/shard" + std::to_string(i));
    TuningDatabase::open(dirs.back(), kTarget, kToolchain).commit(contents[i]);
  }
  return dirs;
}

std::string merge_error(const std::string& out, const std::vector<std::string>& inputs) {
  try {
    tuner::merge_databases(out, inputs);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("db merge: the rule keeps one record per measurement, whatever the order", "[db][merge]") {
  TuningRecord tie = record(1, 16, 1.0);
  tie.min_ms = 0.5;
  TuningRecord estimate = record(1, 16, 0.1);
  estimate.measured = false;
  std::vector<TuningRecord> records = {record(1, 16, 1.0), tie,         estimate, record(1, 16, 2.0),
                                       record(1, 32, 1.5), record(1, 16, 3.0, "Other CPU")};
  std::vector<std::string> expected = dumps(tuner::merge_record_sets(records));
  REQUIRE(expected.size() == 3);  // tile_n 16 on Test CPU, tile_n 16 on Other CPU, tile_n 32
  std::vector<int> order = {0, 1, 2, 3, 4, 5};
  do {
    std::vector<TuningRecord> shuffled;
    for (int i : order) shuffled.push_back(records[i]);
    REQUIRE(dumps(tuner::merge_record_sets(shuffled)) == expected);
  } while (std::next_permutation(order.begin(), order.end()));

  std::vector<TuningRecord> merged = tuner::merge_record_sets(records);
  auto on = [&](const std::string& device, int64_t tile_n) {
    for (const TuningRecord& r : merged)
      if (r.measured_on == device && r.schedule.get_int("tile_n") == tile_n) return r;
    FAIL("no record of tile_n " << tile_n << " measured on " << device);
    return TuningRecord{};
  };
  CHECK(on("Test CPU", 16).median_ms == 1.0);  // the best measurement, not the estimate
  CHECK(on("Test CPU", 16).measured);
  CHECK(on("Other CPU", 16).median_ms == 3.0);  // another machine's time is kept beside it
  CHECK(on("Test CPU", 32).median_ms == 1.5);
  CHECK(dumps(tuner::merge_record_sets(merged)) == expected);  // merging the result again changes nothing
}

TEST_CASE("db merge: shards merged in any order give the same file, and a second merge changes nothing",
          "[db][merge]") {
  std::string root = temp_dir("db_merge_order");
  std::vector<std::string> shards = make_shards(root);
  std::vector<std::string> files;
  std::vector<int> order = {0, 1, 2};
  int n = 0;
  do {
    std::string out = root + "/out" + std::to_string(n++);
    tuner::MergeSummary summary = tuner::merge_databases(out, {shards[order[0]], shards[order[1]], shards[order[2]]});
    CHECK(summary.read == 9);
    CHECK(summary.before == 0);
    files.push_back(read_text(summary.file));
  } while (std::next_permutation(order.begin(), order.end()));
  for (const std::string& file : files) CHECK(file == files.front());

  // One input at a time, in two different orders, gives the same file too.
  std::string one_by_one = root + "/one_by_one", reversed = root + "/reversed";
  for (int i : {0, 1, 2}) tuner::merge_databases(one_by_one, {shards[i]});
  for (int i : {2, 1, 0}) tuner::merge_databases(reversed, {shards[i]});
  CHECK(read_text(one_by_one + "/records.json") == files.front());
  CHECK(read_text(reversed + "/records.json") == files.front());

  TuningDatabase merged = TuningDatabase::open(root + "/out0", kTarget, kToolchain);
  CHECK(merged.all_records().size() == 5);  // 3 schedules of m1 (one of them for hip), 2 of m4
  CHECK(merged.best(qmatmul(1)).record->median_ms == 0.8);
  CHECK(merged.best(qmatmul(4)).record->median_ms == 2.5);

  auto modified = fs::last_write_time(root + "/out0/records.json");
  tuner::MergeSummary again = tuner::merge_databases(root + "/out0", shards);
  CHECK(again.before == 5);
  CHECK(again.after == 5);
  CHECK(read_text(root + "/out0/records.json") == files.front());
  CHECK(fs::last_write_time(root + "/out0/records.json") == modified);  // nothing was written
}

// A record's identity includes the hardware it was measured on: neither measurement folds into the other.
TEST_CASE("db merge: one schedule measured on two machines keeps both records", "[db][merge]") {
  std::string root = temp_dir("db_merge_hardware");
  TuningDatabase::open(root + "/a", kTarget, kToolchain).commit({record(1, 16, 1.0, "Test CPU")});
  TuningDatabase::open(root + "/b", kTarget, kToolchain).commit({record(1, 16, 3.0, "Other CPU")});
  tuner::merge_databases(root + "/out", {root + "/a", root + "/b"});
  TuningDatabase out = TuningDatabase::open(root + "/out", kTarget, kToolchain);
  REQUIRE(out.all_records().size() == 2);
  std::vector<std::string> devices = {out.all_records()[0].measured_on, out.all_records()[1].measured_on};
  std::sort(devices.begin(), devices.end());
  CHECK(devices == std::vector<std::string>{"Other CPU", "Test CPU"});
}

// Two measurements of one schedule on one machine with the same median and timestamp: the tie is broken
// by the record's text, so merging them one at a time gives the same file in either order.
TEST_CASE("db merge: tied measurements merged one at a time give the same file in any order",
          "[db][merge]") {
  std::string root = temp_dir("db_merge_tie");
  TuningRecord tie = record(1, 16, 1.0);
  tie.min_ms = 0.5;
  TuningDatabase::open(root + "/a", kTarget, kToolchain).commit({record(1, 16, 1.0)});
  TuningDatabase::open(root + "/b", kTarget, kToolchain).commit({tie});
  tuner::merge_databases(root + "/ab", {root + "/a"});
  tuner::merge_databases(root + "/ab", {root + "/b"});
  tuner::merge_databases(root + "/ba", {root + "/b"});
  tuner::merge_databases(root + "/ba", {root + "/a"});
  CHECK(read_text(root + "/ab/records.json") == read_text(root + "/ba/records.json"));
}

TEST_CASE("db merge: a corrupt or missing input is refused by name and OUT is untouched", "[db][merge]") {
  std::string root = temp_dir("db_merge_corrupt");
  std::vector<std::string> shards = make_shards(root);
  std::string corrupt = root + "/corrupt";
  fs::create_directories(corrupt);
  std::ofstream(corrupt + "/records.json") << "{\"format\": \"tetra-tuning-db\", \"records\": [";

  // A new OUT is not even created.
  std::string message = merge_error(root + "/new", {shards[0], corrupt});
  CHECK_THAT(message, Catch::Contains(corrupt + "/records.json"));
  CHECK_THAT(message, Catch::Contains("not valid JSON"));
  CHECK(!fs::exists(root + "/new"));
  CHECK_THAT(merge_error(root + "/new", {shards[0], root + "/missing"}),
             Catch::Contains("no tuning database folder " + root + "/missing"));
  CHECK(!fs::exists(root + "/new"));

  // An existing OUT keeps its file as it was, whichever input is bad.
  std::string out = root + "/out";
  tuner::merge_databases(out, {shards[0]});
  std::string before = read_text(out + "/records.json");
  CHECK_THAT(merge_error(out, {corrupt, shards[1]}), Catch::Contains(corrupt + "/records.json"));
  CHECK_THAT(merge_error(out, {shards[1], corrupt}), Catch::Contains(corrupt + "/records.json"));
  CHECK(read_text(out + "/records.json") == before);

  // A corrupt OUT is refused too, and left as it is.
  CHECK_THAT(merge_error(corrupt, {shards[0]}), Catch::Contains(corrupt + "/records.json"));
  CHECK(read_text(corrupt + "/records.json") == "{\"format\": \"tetra-tuning-db\", \"records\": [");

  // The CLI: exit 2 with the message; a good merge prints the counts.
  std::string output;
  CHECK(run_command(tetra_cli() + " db merge " + out + " " + corrupt, &output) == 2);
  CHECK_THAT(output, Catch::Contains("tetra: error: " + corrupt + "/records.json"));
  CHECK(read_text(out + "/records.json") == before);
  REQUIRE(run_command(tetra_cli() + " db merge " + out + " " + shards[1] + " " + shards[2], &output) == 0);
  CHECK_THAT(output, Catch::Contains("merged 6 records from 2 database(s) into " + out + "/records.json: 3 -> 5"));
}
