#include "tuner/db_merge.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "importer/error.h"

namespace tetra::tuner {
namespace fs = std::filesystem;

namespace {

// Merge reads every target's records (all_records), so the target and toolchain the database is
// opened for do not matter.
TuningDatabase open_all_targets(const std::string& dir) { return TuningDatabase::open(dir, "", ""); }

}  // namespace

MergeSummary merge_databases(const std::string& out, const std::vector<std::string>& inputs) {
  check(!inputs.empty(), ErrorKind::Invalid, "db merge: give at least one database to merge into " + out);
  MergeSummary summary;
  std::vector<TuningRecord> records;
  // Every input is read before OUT is touched: a corrupt or missing one throws here.
  for (const std::string& dir : inputs) {
    check(fs::is_directory(dir), ErrorKind::Io, "no tuning database folder " + dir);
    TuningDatabase in = open_all_targets(dir);
    records.insert(records.end(), in.all_records().begin(), in.all_records().end());
    summary.read += in.all_records().size();
    if (!in.other_schema_records().empty())
      summary.notes.push_back(std::to_string(in.other_schema_records().size()) +
                              " records of other schema versions in " + in.file() + " were not merged");
  }
  TuningDatabase db = open_all_targets(out);  // OUT may be new; a corrupt one throws here
  summary.file = db.file();
  summary.before = db.all_records().size();
  records.insert(records.end(), db.all_records().begin(), db.all_records().end());

  // Commit only what OUT does not hold already: merging a database twice writes nothing.
  std::set<std::string> present;
  for (const TuningRecord& r : db.all_records()) present.insert(r.to_json().dump());
  std::vector<TuningRecord> added;
  for (TuningRecord& r : merge_record_sets(std::move(records)))
    if (!present.count(r.to_json().dump())) added.push_back(std::move(r));
  if (!added.empty()) {
    db.commit(added);
    db.compact();  // the merged database is one file, ready to ship
  }
  summary.after = db.all_records().size();
  return summary;
}

}  // namespace tetra::tuner
