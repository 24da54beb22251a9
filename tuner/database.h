// The tuning database: measured (or estimated) schedules per workload, target and toolchain, in a
// folder: a versioned JSON file DIR/records.json and a journal DIR/journal.jsonl of the records
// committed since it was last compacted, one per line (the schema is in docs/tuning_db.md).
//
// Unlike TVM MetaSchedule's database (apache/tvm issue 15549), every lookup is keyed by the target and
// the toolchain as well as the workload: a database opened for x86-64-avx512-vnni never returns a
// schedule tuned for x86-64-avx2 or hip-gfx90a. Records of other targets, toolchains and schema
// versions stay in the file, untouched, so one database can serve several machines.
//
//   auto db = tuner::TuningDatabase::open("tuning_db", dsl::host_target().name, dsl::toolchain_id());
//   auto hit = db.best(tuner::workload_desc(workload, db.target()));   // exact, nearest shape, or default
//   if (hit.schedule) ... else use the template default
//   db.commit({record, ...});                             // appended to the journal, safe with concurrent writers
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dsl/core/kernel_spec.h"
#include "dsl/qconv.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"

namespace tetra::tuner {

// The record layout this tetra reads and writes. Bump it when a record's fields change meaning;
// records of another version are kept in the file but not used. Version 2: the workload carries its
// kernel spec (dsl/core/kernel_spec.h) instead of format and epilogue strings.
constexpr int kSchemaVersion = 2;

// A workload as the database sees it: its key (exact lookups), its shape, and the kernel spec of the
// code it runs (what the generated code depends on, in its tuning form: KernelSpec::for_tuning). A
// lookup finds the nearest shape among workloads of the same spec and dim names, by the smallest sum
// over dims of |log(a / b)|.
struct WorkloadDesc {
  std::string key;                      // "qmatmul m1 k4096 n4096 int4 blocked(k,32) f32 bias"
  std::map<std::string, int64_t> dims;  // {M, K, N}; {N, C, H, W, M, group, kh, kw}
  dsl::KernelSpec spec;                 // its target is the record's

  std::string op() const { return dsl::kernel_op_name(spec.op); }
  nlohmann::json to_json() const;
  bool operator==(const WorkloadDesc& o) const { return key == o.key && dims == o.dims && spec == o.spec; }
};

// The workload's description for records of `target` (a canonical TargetSpec name).
WorkloadDesc workload_desc(const dsl::QMatMulWorkload& workload, const std::string& target);
// Conv: the kernel size, strides and whether it is dense are compiled into the code, so they are part
// of the spec (a nearest conv has the same ones); N, C, H, W, M, the group and the kernel are the dims.
// A depthwise conv also has the dim "depthwise" = 1: its template differs, so it is never the nearest of
// a grouped one.
WorkloadDesc workload_desc(const dsl::QConvWorkload& workload, const std::string& target);

// The sum over dims of |log(a / b)| (|log((a + 1) / (b + 1))| where a dim is 0, a pad say);
// infinity when the two are not comparable (another spec or set of dims).
double workload_distance(const WorkloadDesc& a, const WorkloadDesc& b);

// One tuning measurement (or cost-model estimate) of one schedule.
// The compute units a GPU's name gives, "... (gfx942:sramecc+:xnack-, 304 CUs, ...)" or "(sm_90, 132 SMs)";
// 0 when it gives none (a CPU, an OpenCL device).
int compute_units_in(const std::string& device_name);

struct TuningRecord {
  WorkloadDesc workload;
  std::string target;     // canonical TargetSpec::name: "x86-64-avx512-vnni", "hip-gfx90a"
  std::string toolchain;  // dsl::toolchain_id(): "halide-14.0.0"
  int schema_version = kSchemaVersion;
  dsl::Schedule schedule;
  double median_ms = 0, min_ms = 0, max_ms = 0;  // cost statistics over `runs` timed runs
  int runs = 0;
  std::string measured_on;  // CPU model, or GPU name and arch: "AMD EPYC 9R14", "MI250X gfx90a"
  int threads = 0;          // CPU threads used for the measurement (0: unknown or a GPU)
  bool measured = true;     // false: estimated by a cost model (never outranks a measurement); absent: true
  std::string timestamp;    // UTC, ISO 8601: "2025-01-31T12:00:00Z"
  std::string error;        // non-empty: the candidate failed (build or run); kept so resumption skips it

  bool failed() const { return !error.empty(); }
  nlohmann::json to_json() const;
  // Throws tetra::Error (Malformed) naming `where` ("DIR/records.json: record 3") on a bad record.
  static TuningRecord from_json(const nlohmann::json& j, const std::string& where);
};

// Is `a` a better record than `b` of the same workload? Working beats failed, measured beats
// estimated, then the lower median time, then the newer timestamp.
bool better_record(const TuningRecord& a, const TuningRecord& b);

// The rule a database keeps its records by (commit, reading, compaction, tetra db merge): one record
// per measurement, whose identity is the workload key, target, toolchain, schedule and the hardware it
// ran on (`measured_on`, so one schedule timed on two machines stays two records); of one identity the
// better is kept (better_record, full ties by the record's JSON text), and a measurement of a schedule
// replaces every estimate of it. Sorted by target, toolchain and
// workload, best first. The result depends only on the set of records, never on their order.
std::vector<TuningRecord> merge_record_sets(std::vector<TuningRecord> records);

// "2025-01-31T12:00:00Z", now.
std::string utc_timestamp();
// This machine's CPU model from /proc/cpuinfo ("AMD EPYC 9R14"), or "unknown cpu".
std::string host_cpu_model();

// Writes a database file holding `records` to `path` (write PATH.tmp, fsync, rename): what
// `tetra db export` writes; copied to DIR/records.json it is a database.
void write_records_file(const std::string& path, const std::vector<TuningRecord>& records);

struct PruneOptions {
  int keep = 0;              // keep this many best working records per workload, target and toolchain; 0: all
  bool drop_failed = false;  // drop failed candidates
};

// A commit compacts once the journal is this long: about 2,500 records.
constexpr int64_t kCompactJournalBytes = int64_t(1) << 20;

// What a database file looked like when it was read: a writer notices that another one replaced it.
struct FileIdentity {
  bool exists = false;
  uint64_t device = 0, inode = 0;
  int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
  bool operator==(const FileIdentity& o) const {
    return exists == o.exists && device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns &&
           ctime_ns == o.ctime_ns;
  }
};

class TuningDatabase {
 public:
  // Reads DIR/journal.jsonl, then DIR/records.json, and merges them (in that order, so that a compaction
  // by another process in between loses nothing). A missing folder or file is an empty database (created
  // on commit). Throws tetra::Error naming the file and the record index or journal line when a file is
  // not valid JSON, not a tetra tuning database, of a newer schema, or holds a malformed record; the
  // files are left as they are. A journal's last line without its newline (a writer killed mid-append)
  // is not read. Records for another target or toolchain, or of another schema version, are skipped
  // (see note()).
  static TuningDatabase open(const std::string& dir, const std::string& target, const std::string& toolchain);
  // Does DIR hold a database (records.json or a journal)?
  static bool exists(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string file() const;          // DIR/records.json
  std::string journal_file() const;  // DIR/journal.jsonl
  const std::string& target() const { return target_; }
  const std::string& toolchain() const { return toolchain_; }

  // The records of this target and toolchain, failed candidates included.
  std::vector<TuningRecord> records() const;
  // Every record of this schema version, of any target and toolchain (db list --all-targets, merge).
  const std::vector<TuningRecord>& all_records() const { return all_; }
  // Records of other schema versions, as they are in the file (kept there, never read).
  const std::vector<nlohmann::json>& other_schema_records() const { return other_schema_; }
  // How many records were skipped for another target, toolchain or schema version, and a sentence
  // saying which ("" when none was).
  int skipped() const { return skipped_; }
  const std::string& note() const { return note_; }

  // Adds records: under an exclusive lock on DIR/.lock, reads what other writers added since this
  // object last looked (the journal's new lines; everything when records.json was replaced), cuts off a
  // torn last line left by a killed writer, appends the records to the journal as JSON lines in one
  // write and fsyncs it. records.json is not touched, unless the journal has grown past
  // kCompactJournalBytes: then the commit compacts. Concurrent writers lose nothing; a writer killed
  // mid-append leaves a torn line that readers skip. This object then holds the merged records
  // (merge_record_sets).
  void commit(const std::vector<TuningRecord>& new_records);
  // Folds the journal into records.json (write DIR/records.json.tmp, fsync, rename) and then empties the
  // journal, under the lock. A crash in between loses nothing: replaying a line already in records.json
  // changes nothing.
  void compact();
  // Removes records as `options` says (from every target) and compacts; returns how many went.
  int prune(const PruneOptions& options);

  struct Lookup {
    std::optional<dsl::Schedule> schedule;  // empty: use the template default
    std::string source;                     // "exact", "nearest: <key>", "default"; an estimate's ends " (estimated)"
    const TuningRecord* record = nullptr;   // the record used; valid until the next commit or prune
  };
  // The best working schedule of this target and toolchain for `workload`: the exact workload's, else
  // the nearest workload's (same op, format and epilogue, closest shape), else none ("default").
  // Measured records come first: an estimate is returned only when no measurement, exact or nearest,
  // exists, and its source says it is one ("exact (estimated)").
  // A nearest schedule was tuned for another shape: check it against the workload's knob space and
  // fall back to the default when it does not fit.
  // `compute_units` (> 0: the GPU that will run it has that many CUs or SMs) puts measurements from a GPU
  // of that count first; one from another count is used only where none exists, as a nearest record, and
  // its source says so ("exact (as nearest: measured on 228 CUs, this GPU has 304)").
  Lookup best(const WorkloadDesc& workload, int compute_units = 0) const;

 private:
  struct Contents {
    std::vector<TuningRecord> records;         // this schema version, every target and toolchain
    std::vector<nlohmann::json> other_schema;  // records of other schema versions, kept verbatim
  };
  // How far the journal has been read: the end of its last complete line, and that line's number.
  struct JournalPosition {
    FileIdentity file;  // only the device and inode are compared: appends change the rest
    int64_t offset = 0;
    int64_t lines = 0;
  };

  // Among measured or estimated records; with `compute_units` > 0, of GPUs of that many only.
  Lookup best_of(const WorkloadDesc& workload, bool measured, int compute_units) const;
  static Contents read_file(const std::string& path, FileIdentity* identity);
  // Adds the journal's complete lines from `position` on to `contents`, and moves `position` past them;
  // `torn_bytes`: how many bytes follow the last complete line.
  static void read_journal(const std::string& path, JournalPosition* position, Contents* contents,
                           int64_t* torn_bytes);
  // Under the lock: brings this object up to date with the files. `torn_bytes` as in read_journal.
  void sync_locked(int64_t* torn_bytes);
  // Under the lock: writes all records to records.json and empties the journal.
  void compact_locked();
  template <class Edit>
  void rewrite(Edit edit);
  void set_contents(Contents contents);

  std::string dir_, target_, toolchain_;
  std::vector<TuningRecord> all_;
  std::vector<nlohmann::json> other_schema_;
  int skipped_ = 0;
  std::string note_;
  // What the records above were read from. `synced_` only after a read under the lock: a commit then
  // reads only the journal's new lines while records.json is the file that was read.
  bool synced_ = false;
  FileIdentity records_file_;
  JournalPosition journal_;
};

}  // namespace tetra::tuner
