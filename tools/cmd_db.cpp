// tetra db: look at and maintain a tuning database folder (tuner/database.h, docs/tuning_db.md).
//   db list DIR [--all-targets]      db show DIR WORKLOAD_KEY       db merge DIR OTHER_DIR...
//   db prune DIR [--keep N] [--drop-failed]                        db export DIR -o FILE.json [--target T]
//   db compact DIR
// Lists and lookups are for this machine's target and toolchain unless --target says otherwise.
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "dsl/target.h"
#include "importer/error.h"
#include "tools/commands.h"
#include "tuner/database.h"
#include "tuner/db_merge.h"

namespace tetra::cli {
namespace {

namespace fs = std::filesystem;
using tuner::TuningDatabase;
using tuner::TuningRecord;

struct DbOptions {
  std::string dir;
  std::string target;  // empty: this machine's
  bool all_targets = false;
  bool json = false;
  std::string workload;
  std::vector<std::string> others;
  int keep = 0;
  bool drop_failed = false;
  std::string output;
};

// "hip:gfx90a" and "hip-gfx90a" name one target: compare canonical names only.
std::string canonical_target(const std::string& text) {
  if (text.empty()) return dsl::host_target().name;
  return dsl::parse_target(text).value().name;  // a bad name throws tetra::Error (exit 2)
}

// The database at `dir`, which must exist: a mistyped folder is an error, not an empty database.
// `note`: say which records this target and toolchain cannot use (for the commands that use them).
TuningDatabase open_existing(const std::string& dir, const std::string& target, bool note) {
  check(fs::is_directory(dir), ErrorKind::Io, "no tuning database folder " + dir);
  TuningDatabase db = TuningDatabase::open(dir, canonical_target(target), dsl::toolchain_id());
  if (note && !db.note().empty()) std::cerr << "note: " << db.note() << "\n";
  return db;
}

std::string cost_str(const TuningRecord& r) {
  if (r.failed()) return "failed: " + r.error;
  std::ostringstream s;
  s << std::fixed << std::setprecision(4) << r.median_ms << " ms (" << (r.measured ? "measured" : "estimated") << ", "
    << r.runs << " runs)";
  return s.str();
}

void print_records(const std::vector<TuningRecord>& records, bool with_target) {
  for (const TuningRecord& r : records) {
    std::cout << "  " << r.workload.key;
    if (with_target) std::cout << "  [" << r.target << ", " << r.toolchain << "]";
    std::cout << "\n      " << cost_str(r) << "  " << r.schedule.to_string() << "\n";
  }
}

nlohmann::json records_json(const std::vector<TuningRecord>& records) {
  nlohmann::json out = nlohmann::json::array();
  for (const TuningRecord& r : records) out.push_back(r.to_json());
  return out;
}

void db_list(const DbOptions& opt) {
  TuningDatabase db = open_existing(opt.dir, opt.target, !opt.all_targets);
  std::vector<TuningRecord> records = opt.all_targets ? db.all_records() : db.records();
  if (opt.json) {
    std::cout << records_json(records).dump(2) << "\n";
    return;
  }
  std::cout << db.file() << ": " << records.size() << " records"
            << (opt.all_targets ? " (all targets)" : " for " + db.target() + ", " + db.toolchain()) << "\n";
  print_records(records, opt.all_targets);
}

void db_show(const DbOptions& opt) {
  TuningDatabase db = open_existing(opt.dir, opt.target, true);
  std::vector<TuningRecord> records;
  for (const TuningRecord& r : db.all_records())
    if (r.workload.key == opt.workload) records.push_back(r);
  check(!records.empty(), ErrorKind::Invalid,
        "no records for workload '" + opt.workload + "' in " + db.file() + " (tetra db list shows the workloads)");
  if (opt.json) {
    std::cout << records_json(records).dump(2) << "\n";
    return;
  }
  TuningDatabase::Lookup hit = db.best(records.front().workload);
  std::cout << opt.workload << "\n  lookup for " << db.target() << ", " << db.toolchain() << ": " << hit.source;
  if (hit.schedule) std::cout << " -> " << hit.schedule->to_string() << ", " << cost_str(*hit.record);
  std::cout << "\n" << records.size() << " records (all targets):\n";
  for (const TuningRecord& r : records)
    std::cout << "  [" << r.target << ", " << r.toolchain << "] " << cost_str(r) << "\n      "
              << r.schedule.to_string() << "\n      on " << r.measured_on << ", " << r.threads << " threads, "
              << r.timestamp << "\n";
}

void db_merge(const DbOptions& opt) {
  tuner::MergeSummary merged = tuner::merge_databases(opt.dir, opt.others);
  for (const std::string& note : merged.notes) std::cerr << "note: " << note << "\n";
  std::cout << "merged " << merged.read << " records from " << opt.others.size() << " database(s) into "
            << merged.file << ": " << merged.before << " -> " << merged.after
            << " records\n";
}

void db_prune(const DbOptions& opt) {
  check(opt.keep >= 0, ErrorKind::Invalid, "db prune: --keep must be positive");
  check(opt.keep > 0 || opt.drop_failed, ErrorKind::Invalid, "db prune: give --keep N and/or --drop-failed");
  TuningDatabase db = open_existing(opt.dir, opt.target, false);
  int removed = db.prune(tuner::PruneOptions{opt.keep, opt.drop_failed});
  std::cout << "removed " << removed << " records from " << db.file() << "; " << db.all_records().size() << " left\n";
}

void db_compact(const DbOptions& opt) {
  TuningDatabase db = open_existing(opt.dir, opt.target, false);
  db.compact();
  std::cout << "compacted " << db.all_records().size() << " records into " << db.file() << "\n";
}

void db_export(const DbOptions& opt) {
  TuningDatabase db = open_existing(opt.dir, opt.target, false);
  std::vector<TuningRecord> records;
  for (const TuningRecord& r : db.all_records())
    if (opt.target.empty() || r.target == db.target()) records.push_back(r);
  tuner::write_records_file(opt.output, records);
  std::cout << "wrote " << records.size() << " records"
            << (opt.target.empty() ? "" : " for " + db.target()) << " to " << opt.output << "\n";
}

}  // namespace

void add_db_command(CLI::App& app) {
  CLI::App* db = app.add_subcommand("db", "Look at and maintain a tuning database folder (DIR/records.json and its journal)");
  db->require_subcommand(1);
  auto opt = std::make_shared<DbOptions>();
  auto target_option = [&](CLI::App* cmd, const char* what) {
    cmd->add_option("--target", opt->target, what);
  };

  CLI::App* list = db->add_subcommand("list", "List the records for this machine's target and toolchain");
  list->add_option("dir", opt->dir, "database folder")->required();
  list->add_flag("--all-targets", opt->all_targets, "list the records of every target and toolchain");
  list->add_flag("--json", opt->json, "print the records as JSON");
  target_option(list, "list the records for this target (default: this machine's)");
  list->callback([opt] { db_list(*opt); });

  CLI::App* show = db->add_subcommand("show", "Show every record of one workload and what a lookup returns");
  show->add_option("dir", opt->dir, "database folder")->required();
  show->add_option("workload", opt->workload, "workload key, e.g. \"qmatmul m1 k4096 n4096 int4 blocked(k,32) f32\"")
      ->required();
  show->add_flag("--json", opt->json, "print the records as JSON");
  target_option(show, "look up for this target (default: this machine's)");
  show->callback([opt] { db_show(*opt); });

  CLI::App* merge = db->add_subcommand(
      "merge", "Add the records of other databases (every target) to DIR; the same result in any order, "
               "records of one schedule measured on different hardware all kept");
  merge->add_option("dir", opt->dir, "database folder to merge into (created if missing)")->required();
  merge->add_option("others", opt->others, "database folders to read")->required();
  merge->callback([opt] { db_merge(*opt); });

  CLI::App* prune = db->add_subcommand("prune", "Remove records: all but the N best per workload, failed ones");
  prune->add_option("dir", opt->dir, "database folder")->required();
  prune->add_option("--keep", opt->keep, "keep the N best working records per workload, target and toolchain");
  prune->add_flag("--drop-failed", opt->drop_failed, "remove the records of failed candidates");
  prune->callback([opt] { db_prune(*opt); });

  CLI::App* compact = db->add_subcommand("compact", "Fold the journal into DIR/records.json");
  compact->add_option("dir", opt->dir, "database folder")->required();
  compact->callback([opt] { db_compact(*opt); });

  CLI::App* exp = db->add_subcommand("export", "Write the records (of one target) to a database file");
  exp->add_option("dir", opt->dir, "database folder")->required();
  exp->add_option("-o,--output", opt->output, "output file (written atomically)")->required();
  target_option(exp, "export only this target's records (default: every target)");
  exp->callback([opt] { db_export(*opt); });
}

}  // namespace tetra::cli
