#include "tuner/database.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "importer/error.h"

namespace tetra::tuner {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormatName = "tetra-tuning-db";
constexpr const char* kRecordsFile = "records.json";
// Bounds on what a database file may ask of the reader: far above any real database (the shipped one
// is 60 KB, 5 levels deep), far below what would exhaust memory or the stack.
constexpr int64_t kMaxFileBytes = int64_t(256) << 20;
constexpr int kMaxJsonDepth = 32;

// A JSON integer as int64_t; nullopt for a non-integer or one beyond int64_t.
std::optional<int64_t> json_int64(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

// ---- workloads --------------------------------------------------------------------------------------

std::string join_words(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words)
    if (!w.empty()) out += (out.empty() ? "" : " ") + w;
  return out;
}

// ---- reading records ----------------------------------------------------------------------------------

// Field access that names the record and the field when the JSON has the wrong shape.
class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) bad("is not a JSON object");
  }
  [[noreturn]] void bad(const std::string& why) const { fail(ErrorKind::Malformed, where_ + ": " + why); }
  const json& get(const std::string& name) const {
    if (!j_.contains(name)) bad("missing field \"" + name + "\"");
    return j_.at(name);
  }
  std::string str(const std::string& name) const {
    const json& v = get(name);
    if (!v.is_string()) bad("\"" + name + "\" must be a string, not " + v.dump());
    return v.get<std::string>();
  }
  int64_t integer(const std::string& name, int64_t lo = std::numeric_limits<int64_t>::min(),
                  int64_t hi = std::numeric_limits<int64_t>::max()) const {
    const json& v = get(name);
    std::optional<int64_t> i = json_int64(v);
    if (!i || *i < lo || *i > hi)
      bad("\"" + name + "\" must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", not " +
          v.dump());
    return *i;
  }
  double number(const std::string& name) const {
    const json& v = get(name);
    if (!v.is_number()) bad("\"" + name + "\" must be a number, not " + v.dump());
    return v.get<double>();
  }
  bool boolean(const std::string& name) const {
    const json& v = get(name);
    if (!v.is_boolean()) bad("\"" + name + "\" must be true or false, not " + v.dump());
    return v.get<bool>();
  }
  // Rejects fields outside `known`: a misspelt field is an error, not silently ignored.
  void only(const std::set<std::string>& known) const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!known.count(it.key())) bad("unknown field \"" + it.key() + "\"");
  }

 private:
  const json& j_;
  std::string where_;
};

WorkloadDesc workload_from_json(const json& j, const std::string& where) {
  Fields f(j, where);
  f.only({"key", "op", "dims", "format", "epilogue"});
  WorkloadDesc w;
  w.key = f.str("key");
  w.op = f.str("op");
  w.format = f.str("format");
  w.epilogue = f.str("epilogue");
  Fields dims(f.get("dims"), where + ", dims");
  for (auto it = j.at("dims").begin(); it != j.at("dims").end(); ++it) w.dims[it.key()] = dims.integer(it.key());
  if (w.key.empty()) f.bad("\"key\" is empty");
  return w;
}

// ---- files --------------------------------------------------------------------------------------------

// An exclusive flock on DIR/.lock for the lifetime of the object. flock locks are released by the
// kernel when the process dies, so a killed writer never leaves the database locked.
class FileLock {
 public:
  explicit FileLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    check(fd_ >= 0, ErrorKind::Io, "cannot open the lock file " + path + ": " + std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd_);
      fail(ErrorKind::Io, "cannot lock " + path + ": " + std::strerror(err));
    }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

void write_all(int fd, const std::string& text, const std::string& path) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    check(n > 0, ErrorKind::Io, "cannot write " + path + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

// Writes `text` to `path` so that a reader (or a crash) sees either the old file or the whole new one:
// write PATH.tmp, fsync it, rename it over PATH, fsync the folder. A PATH.tmp left by a killed writer
// is simply overwritten; it is never read.
void write_file_atomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  std::error_code ec;
  check(!fs::is_directory(path, ec), ErrorKind::Io, "cannot write " + path + ": it is a folder");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(fd >= 0, ErrorKind::Io, "cannot create " + tmp + ": " + std::strerror(errno));
  // errno is read right after the call that failed: a message built beside the call may see a later one.
  auto give_up = [&](const std::string& what) {
    std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail(ErrorKind::Io, what + ": " + why);
  };
  try {
    write_all(fd, text, tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) give_up("cannot sync " + tmp);
  ::close(fd);
  fd = -1;
  if (::rename(tmp.c_str(), path.c_str()) != 0) give_up("cannot rename " + tmp + " to " + path);
  std::string folder = fs::path(path).parent_path().string();
  int dir_fd = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {  // makes the rename itself durable; a failure here loses nothing already written
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

nlohmann::ordered_json ordered_workload(const WorkloadDesc& w) {
  return {{"key", w.key}, {"op", w.op}, {"dims", w.dims}, {"format", w.format}, {"epilogue", w.epilogue}};
}

// Fields in reading order (workload first) for the file; to_json() has them sorted.
nlohmann::ordered_json ordered_record(const TuningRecord& r) {
  nlohmann::ordered_json j{{"workload", ordered_workload(r.workload)},
                           {"target", r.target},
                           {"toolchain", r.toolchain},
                           {"schema_version", r.schema_version},
                           {"schedule", {{"template", r.schedule.template_name}, {"knobs", r.schedule.to_json()["knobs"]}}},
                           {"cost", {{"median_ms", r.median_ms}, {"min_ms", r.min_ms}, {"max_ms", r.max_ms}, {"runs", r.runs}}},
                           {"measured", r.measured},
                           {"measured_on", {{"device", r.measured_on}, {"threads", r.threads}}},
                           {"timestamp", r.timestamp}};
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

// One record per line: the file stays readable and diffs well in git.
std::string records_file_text(const std::vector<TuningRecord>& records, const std::vector<json>& other_schema) {
  std::string text = std::string("{\n  \"format\": \"") + kFormatName + "\",\n  \"schema_version\": " +
                     std::to_string(kSchemaVersion) + ",\n  \"records\": [";
  bool first = true;
  auto add = [&](const nlohmann::ordered_json& record) {
    text += (first ? "\n    " : ",\n    ") + record.dump();
    first = false;
  };
  for (const TuningRecord& r : records) add(ordered_record(r));
  for (const json& r : other_schema) add(r);
  return text + (first ? "]\n}\n" : "\n  ]\n}\n");
}

std::string dedupe_key(const TuningRecord& r) {
  return r.workload.key + "\n" + r.target + "\n" + r.toolchain + "\n" + r.schedule.to_string();
}

// One record per workload + target + toolchain + schedule (the better kept), sorted so that the
// file reads and diffs well: by target, toolchain, workload, then best first.
std::vector<TuningRecord> merge_records(std::vector<TuningRecord> records) {
  std::map<std::string, size_t> index;
  std::vector<TuningRecord> out;
  for (TuningRecord& r : records) {
    auto [it, added] = index.emplace(dedupe_key(r), out.size());
    if (added) out.push_back(std::move(r));
    else if (better_record(r, out[it->second])) out[it->second] = std::move(r);
  }
  std::stable_sort(out.begin(), out.end(), [](const TuningRecord& a, const TuningRecord& b) {
    auto ka = std::tie(a.target, a.toolchain, a.workload.key);
    auto kb = std::tie(b.target, b.toolchain, b.workload.key);
    if (ka != kb) return ka < kb;
    return better_record(a, b);
  });
  return out;
}

}  // namespace

// ---- WorkloadDesc -------------------------------------------------------------------------------------

json WorkloadDesc::to_json() const { return json(ordered_workload(*this)); }

WorkloadDesc workload_desc(const dsl::QMatMulWorkload& w) {
  WorkloadDesc d;
  d.key = w.key();
  d.op = "qmatmul";
  d.dims = {{"M", w.M}, {"K", w.K}, {"N", w.N}};
  // int8-activation workloads have their own template: never the nearest of a float32 one.
  d.format = w.format.describe() + (w.int8_activations ? " a8" : "");
  d.epilogue = join_words({w.has_bias ? "bias" : "",
                           w.activation == dsl::Activation::None ? "" : dsl::activation_name(w.activation)});
  return d;
}

WorkloadDesc workload_desc(const dsl::QConvWorkload& w) {
  auto x = [](int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); };
  WorkloadDesc d;
  d.key = w.key();
  d.op = "qconv";
  d.dims = {{"N", w.N}, {"C", w.C}, {"H", w.H}, {"W", w.W}, {"M", w.M}, {"group", w.group}, {"kh", w.KH}, {"kw", w.KW}};
  // Depthwise and grouped convs use different templates: never the nearest of each other.
  d.format = join_words({"k" + x(w.KH, w.KW), "s" + x(w.SH, w.SW), w.depthwise() ? "depthwise" : "", w.format.describe()});
  d.epilogue = w.has_bias ? "bias" : "";
  return d;
}

double workload_distance(const WorkloadDesc& a, const WorkloadDesc& b) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (a.op != b.op || a.format != b.format || a.epilogue != b.epilogue || a.dims.size() != b.dims.size()) return kInf;
  double distance = 0;
  for (const auto& [name, va] : a.dims) {
    auto it = b.dims.find(name);
    if (it == b.dims.end()) return kInf;
    double x = static_cast<double>(va), y = static_cast<double>(it->second);
    if (x <= 0 || y <= 0) {
      x += 1;
      y += 1;
    }
    if (x <= 0 || y <= 0) return kInf;  // a negative dim: not a shape
    distance += std::fabs(std::log(x / y));
  }
  return distance;
}

// ---- TuningRecord -------------------------------------------------------------------------------------

json TuningRecord::to_json() const { return json(ordered_record(*this)); }

TuningRecord TuningRecord::from_json(const json& j, const std::string& where) {
  Fields f(j, where);
  f.only({"schema_version", "workload", "target", "toolchain", "schedule", "cost", "measured", "measured_on",
          "timestamp", "error"});
  TuningRecord r;
  r.schema_version = static_cast<int>(f.integer("schema_version", 0, std::numeric_limits<int>::max()));
  r.workload = workload_from_json(f.get("workload"), where + ", workload");
  r.target = f.str("target");
  r.toolchain = f.str("toolchain");
  dsl::Result<dsl::Schedule> schedule = dsl::Schedule::from_json(f.get("schedule"));
  if (!schedule) f.bad("bad schedule: " + schedule.failure().message);
  r.schedule = schedule.value();

  Fields cost(f.get("cost"), where + ", cost");
  cost.only({"median_ms", "min_ms", "max_ms", "runs"});
  r.median_ms = cost.number("median_ms");
  r.min_ms = cost.number("min_ms");
  r.max_ms = cost.number("max_ms");
  r.runs = static_cast<int>(cost.integer("runs", 0, std::numeric_limits<int>::max()));

  r.measured = j.contains("measured") ? f.boolean("measured") : true;  // records before the field were all measured
  Fields on(f.get("measured_on"), where + ", measured_on");
  on.only({"device", "threads"});
  r.measured_on = on.str("device");
  r.threads = static_cast<int>(on.integer("threads", 0, std::numeric_limits<int>::max()));
  r.timestamp = f.str("timestamp");
  if (j.contains("error")) r.error = f.str("error");
  if (r.target.empty() || r.toolchain.empty()) f.bad("\"target\" and \"toolchain\" must not be empty");
  return r;
}

bool better_record(const TuningRecord& a, const TuningRecord& b) {
  if (a.failed() != b.failed()) return !a.failed();
  if (a.measured != b.measured) return a.measured;
  if (a.median_ms != b.median_ms) return a.median_ms < b.median_ms;
  return a.timestamp > b.timestamp;  // ISO 8601 in UTC sorts as text
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string host_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "unknown cpu" : line.substr(start);
  }
  return "unknown cpu";
}

void write_records_file(const std::string& path, const std::vector<TuningRecord>& records) {
  write_file_atomically(path, records_file_text(merge_records(records), {}));
}

// ---- TuningDatabase -----------------------------------------------------------------------------------

std::string TuningDatabase::file() const { return (fs::path(dir_) / kRecordsFile).string(); }

namespace {

// The whole file, which must be a regular file of at most kMaxFileBytes; "" with `exists` false when
// there is none. Opened without blocking, so a FIFO is refused rather than waited on.
std::string read_database_text(const std::string& path, bool* exists) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  *exists = fd >= 0 || errno != ENOENT;
  if (!*exists) return "";
  check(fd >= 0, ErrorKind::Io, "cannot read the tuning database " + path + ": " + std::strerror(errno));
  struct stat st {};
  bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (!regular || st.st_size > kMaxFileBytes) {
    ::close(fd);
    fail(ErrorKind::Io, path + (regular ? ": the tuning database is larger than " + std::to_string(kMaxFileBytes) +
                                              " bytes"
                                        : ": the tuning database is not a regular file"));
  }
  std::string text(size_t(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the file shrank: parsing what was read reports it
    done += size_t(n);
  }
  ::close(fd);
  text.resize(done);
  return text;
}

}  // namespace

TuningDatabase::Contents TuningDatabase::read_file(const std::string& path) {
  Contents contents;
  bool exists = false;
  std::string text = read_database_text(path, &exists);
  if (!exists) return contents;  // a new database
  const std::string keep = " (the file was left as it is; fix or move it away)";
  // Nesting is bounded while parsing: copying or destroying a deeper value would recurse past the stack.
  auto bounded_depth = [&](int depth, json::parse_event_t, json&) {
    check(depth <= kMaxJsonDepth, ErrorKind::Malformed,
          path + ": the tuning database nests deeper than " + std::to_string(kMaxJsonDepth) + " levels" + keep);
    return true;
  };
  json j;
  try {
    j = json::parse(text, bounded_depth);
  } catch (const json::exception& e) {  // a syntax error, or a number beyond double (1e400)
    fail(ErrorKind::Malformed, path + ": the tuning database is corrupt, not valid JSON: " + e.what() + keep);
  }
  check(j.is_object() && j.contains("format") && j["format"] == kFormatName, ErrorKind::Malformed,
        path + ": not a tetra tuning database (expected an object with \"format\": \"" + kFormatName + "\")" + keep);
  // -1 stands for a missing or non-integer version (and for one beyond int64_t).
  const int64_t version = (j.contains("schema_version") ? json_int64(j["schema_version"]) : std::nullopt).value_or(-1);
  check(version >= 0, ErrorKind::Malformed,
        path + ": \"schema_version\" must be an integer from 0, not " +
            (j.contains("schema_version") ? j["schema_version"].dump() : std::string("missing")) + keep);
  check(version <= kSchemaVersion, ErrorKind::Malformed,
        path + ": written with schema version " + std::to_string(version) + ", newer than this tetra's (" +
            std::to_string(kSchemaVersion) + "); use a newer tetra" + keep);
  check(j.contains("records") && j["records"].is_array(), ErrorKind::Malformed,
        path + ": \"records\" must be an array" + keep);

  const json& records = j["records"];
  for (size_t i = 0; i < records.size(); ++i) {
    std::string where = path + ": record " + std::to_string(i);
    const json& r = records[i];
    // Records of other versions are kept, but their version must still be an int: never read modulo 2^32.
    const int64_t record_version =
        (r.is_object() && r.contains("schema_version") ? json_int64(r["schema_version"]) : std::nullopt).value_or(-1);
    check(record_version >= 0 && record_version <= std::numeric_limits<int>::max(), ErrorKind::Malformed,
          where + ": not an object with an integer \"schema_version\" from 0 to " +
              std::to_string(std::numeric_limits<int>::max()) + keep);
    if (record_version != kSchemaVersion) {
      contents.other_schema.push_back(r);  // another layout: kept verbatim, not read
      continue;
    }
    try {
      contents.records.push_back(TuningRecord::from_json(r, where));
    } catch (const Error& e) {
      fail(e.kind(), e.what() + keep);
    }
  }
  return contents;
}

void TuningDatabase::set_contents(Contents contents) {
  all_ = std::move(contents.records);
  other_schema_ = std::move(contents.other_schema);

  // Count what this target and toolchain cannot use, by reason, for note().
  std::map<std::string, int> reasons;
  for (const TuningRecord& r : all_) {
    if (r.target != target_) reasons["target " + r.target]++;
    else if (r.toolchain != toolchain_) reasons["toolchain " + r.toolchain]++;
  }
  for (const json& r : other_schema_) reasons["schema version " + std::to_string(r["schema_version"].get<int>())]++;
  skipped_ = 0;
  std::string why;
  for (const auto& [reason, count] : reasons) {
    skipped_ += count;
    why += (why.empty() ? "" : ", ") + std::to_string(count) + " for " + reason;
  }
  note_.clear();
  if (skipped_ > 0)
    note_ = file() + ": skipped " + std::to_string(skipped_) + " of " + std::to_string(all_.size() + other_schema_.size()) +
            " records (" + why + "); this tetra uses " + target_ + ", " + toolchain_ + ", schema version " +
            std::to_string(kSchemaVersion) + ". They stay in the file.";
}

TuningDatabase TuningDatabase::open(const std::string& dir, const std::string& target, const std::string& toolchain) {
  TuningDatabase db;
  db.dir_ = dir;
  db.target_ = target;
  db.toolchain_ = toolchain;
  // No lock: writers replace the file by rename, so a reader sees the old file or the new one.
  db.set_contents(read_file(db.file()));
  return db;
}

std::vector<TuningRecord> TuningDatabase::records() const {
  std::vector<TuningRecord> out;
  for (const TuningRecord& r : all_)
    if (r.target == target_ && r.toolchain == toolchain_) out.push_back(r);
  return out;
}

// Read-modify-write under the lock: `edit` changes the records of the file as it is now (not as it was
// at open()), so writes by other processes since then are kept.
template <class Edit>
void TuningDatabase::update(Edit edit) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  check(!ec, ErrorKind::Io, "cannot create the tuning database folder " + dir_ + ": " + ec.message());
  FileLock lock((fs::path(dir_) / ".lock").string());
  Contents contents = read_file(file());  // throws on a corrupt file, which is then never overwritten
  contents.records = merge_records(edit(std::move(contents.records)));
  write_file_atomically(file(), records_file_text(contents.records, contents.other_schema));
  set_contents(std::move(contents));
}

void TuningDatabase::commit(const std::vector<TuningRecord>& new_records) {
  for (const TuningRecord& r : new_records) {
    check(!r.workload.key.empty() && !r.target.empty() && !r.toolchain.empty(), ErrorKind::Invalid,
          "a tuning record needs a workload key, a target and a toolchain");
    check(r.schema_version == kSchemaVersion, ErrorKind::Invalid,
          "cannot commit a record of schema version " + std::to_string(r.schema_version));
  }
  update([&](std::vector<TuningRecord> records) {
    records.insert(records.end(), new_records.begin(), new_records.end());
    return records;
  });
}

int TuningDatabase::prune(const PruneOptions& options) {
  int removed = 0;
  update([&](std::vector<TuningRecord> records) {
    records = merge_records(std::move(records));  // sorted: each workload's records together, best first
    std::vector<TuningRecord> kept;
    std::map<std::string, int> working_kept;  // per workload + target + toolchain
    for (TuningRecord& r : records) {
      std::string group = r.workload.key + "\n" + r.target + "\n" + r.toolchain;
      bool keep = r.failed() ? !options.drop_failed : (options.keep <= 0 || working_kept[group]++ < options.keep);
      if (keep) kept.push_back(std::move(r));
      else removed++;
    }
    return kept;
  });
  return removed;
}

TuningDatabase::Lookup TuningDatabase::best(const WorkloadDesc& workload) const {
  // Measurements first, the nearest shape's included: an estimate is used only where none exists.
  if (Lookup measured = best_of(workload, true); measured.record) return measured;
  return best_of(workload, false);
}

TuningDatabase::Lookup TuningDatabase::best_of(const WorkloadDesc& workload, bool measured) const {
  const TuningRecord* exact = nullptr;
  const TuningRecord* nearest = nullptr;
  double nearest_distance = std::numeric_limits<double>::infinity();
  for (const TuningRecord& r : all_) {
    if (r.target != target_ || r.toolchain != toolchain_ || r.failed() || r.measured != measured) continue;
    if (r.workload.key == workload.key) {
      if (!exact || better_record(r, *exact)) exact = &r;
      continue;
    }
    double d = workload_distance(r.workload, workload);
    if (!std::isfinite(d)) continue;
    // The closest shape; between equally close workloads the smaller key (deterministic), then the best record.
    bool closer = !nearest || d < nearest_distance ||
                  (d == nearest_distance && (r.workload.key < nearest->workload.key ||
                                             (r.workload.key == nearest->workload.key && better_record(r, *nearest))));
    if (closer) {
      nearest = &r;
      nearest_distance = d;
    }
  }
  if (exact) return {exact->schedule, "exact", exact};
  if (nearest) return {nearest->schedule, "nearest: " + nearest->workload.key, nearest};
  return {std::nullopt, "default", nullptr};
}

}  // namespace tetra::tuner
