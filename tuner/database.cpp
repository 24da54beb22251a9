#include "tuner/database.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "importer/error.h"

namespace tetra::tuner {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormatName = "tetra-tuning-db";
constexpr const char* kRecordsFile = "records.json";
constexpr const char* kJournalFile = "journal.jsonl";
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
  f.only({"key", "dims", "spec"});
  WorkloadDesc w;
  w.key = f.str("key");
  Fields dims(f.get("dims"), where + ", dims");
  for (auto it = j.at("dims").begin(); it != j.at("dims").end(); ++it) w.dims[it.key()] = dims.integer(it.key());
  if (w.key.empty()) f.bad("\"key\" is empty");
  dsl::Result<dsl::KernelSpec> spec = dsl::KernelSpec::from_json(f.get("spec"));
  if (!spec) f.bad("bad spec: " + spec.failure().describe());
  w.spec = spec.value();
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

void sync_folder(const std::string& folder) {
  int dir_fd = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {  // makes a new or renamed name durable; a failure here loses nothing already written
    ::fsync(dir_fd);
    ::close(dir_fd);
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
  sync_folder(fs::path(path).parent_path().string());  // makes the rename itself durable
}

nlohmann::ordered_json ordered_workload(const WorkloadDesc& w) {
  return {{"key", w.key}, {"dims", w.dims}, {"spec", w.spec.to_json()}};
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

// A schedule of a workload for a target and toolchain.
std::string candidate_of(const TuningRecord& r) {
  return r.workload.key + "\n" + r.target + "\n" + r.toolchain + "\n" + r.schedule.to_string();
}

// The measurement a record stands for: the candidate, timed on one kind of hardware.
std::string identity(const TuningRecord& r) { return candidate_of(r) + "\n" + r.measured_on; }

// better_record, with full ties decided by the record's JSON text: a total order, so the kept record
// never depends on which came first.
bool wins_over(const TuningRecord& a, const TuningRecord& b) {
  if (better_record(a, b)) return true;
  if (better_record(b, a)) return false;
  return a.to_json().dump() < b.to_json().dump();
}

}  // namespace

std::vector<TuningRecord> merge_record_sets(std::vector<TuningRecord> records) {
  std::map<std::string, size_t> index;
  std::vector<TuningRecord> out;
  for (TuningRecord& r : records) {
    auto [it, added] = index.emplace(identity(r), out.size());
    if (added) out.push_back(std::move(r));
    else if (wins_over(r, out[it->second])) out[it->second] = std::move(r);
  }
  // A measurement of a candidate replaces any estimate of it, whatever hardware it ran on.
  std::set<std::string> measured;
  for (const TuningRecord& r : out)
    if (r.measured) measured.insert(candidate_of(r));
  out.erase(std::remove_if(out.begin(), out.end(),
                           [&](const TuningRecord& r) { return !r.measured && measured.count(candidate_of(r)); }),
            out.end());
  std::sort(out.begin(), out.end(), [](const TuningRecord& a, const TuningRecord& b) {
    auto ka = std::tie(a.target, a.toolchain, a.workload.key);
    auto kb = std::tie(b.target, b.toolchain, b.workload.key);
    if (ka != kb) return ka < kb;
    return wins_over(a, b);
  });
  return out;
}

// ---- WorkloadDesc -------------------------------------------------------------------------------------

json WorkloadDesc::to_json() const { return json(ordered_workload(*this)); }

WorkloadDesc workload_desc(const dsl::QMatMulWorkload& w, const std::string& target) {
  // int8-activation workloads have their own template and layout, which the spec names: never the
  // nearest of a float32 one.
  return {w.key(), {{"M", w.M}, {"K", w.K}, {"N", w.N}}, dsl::kernel_spec(w, target).for_tuning()};
}

WorkloadDesc workload_desc(const dsl::QConvWorkload& w, const std::string& target) {
  WorkloadDesc d{
      w.key(),
      {{"N", w.N}, {"C", w.C}, {"H", w.H}, {"W", w.W}, {"M", w.M}, {"group", w.group}, {"kh", w.KH}, {"kw", w.KW}},
      dsl::kernel_spec(w, target).for_tuning()};
  // Depthwise and grouped convs use different templates: never the nearest of each other.
  if (w.depthwise()) d.dims["depthwise"] = 1;
  return d;
}

double workload_distance(const WorkloadDesc& a, const WorkloadDesc& b) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  if (a.spec != b.spec || a.dims.size() != b.dims.size()) return kInf;
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
  if (r.workload.spec.target != r.target)
    f.bad("the workload's spec is for target \"" + r.workload.spec.target + "\", the record for \"" + r.target + "\"");
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
  write_file_atomically(path, records_file_text(merge_record_sets(records), {}));
}

// ---- TuningDatabase -----------------------------------------------------------------------------------

std::string TuningDatabase::file() const { return (fs::path(dir_) / kRecordsFile).string(); }
std::string TuningDatabase::journal_file() const { return (fs::path(dir_) / kJournalFile).string(); }

bool TuningDatabase::exists(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / kRecordsFile, ec) || fs::exists(fs::path(dir) / kJournalFile, ec);
}

namespace {

const std::string kLeftAsItIs = " (the file was left as it is; fix or move it away)";

struct FileRead {
  bool exists = false;
  struct stat st {};
  std::string text;  // from the offset asked for to the end
};

// `path` from `offset` to its end. It must be a regular file of at most kMaxFileBytes; a missing one
// reads as not existing. Opened without blocking, so a FIFO is refused rather than waited on.
FileRead read_database_file(const std::string& path, int64_t offset) {
  FileRead out;
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  out.exists = fd >= 0 || errno != ENOENT;
  if (!out.exists) return out;
  check(fd >= 0, ErrorKind::Io, "cannot read the tuning database " + path + ": " + std::strerror(errno));
  bool regular = ::fstat(fd, &out.st) == 0 && S_ISREG(out.st.st_mode);
  if (!regular || out.st.st_size > kMaxFileBytes) {
    ::close(fd);
    fail(ErrorKind::Io, path + (regular ? ": the tuning database is larger than " + std::to_string(kMaxFileBytes) +
                                              " bytes"
                                        : ": the tuning database is not a regular file"));
  }
  out.text.resize(size_t(std::max<int64_t>(0, out.st.st_size - offset)));
  size_t done = 0;
  while (done < out.text.size()) {
    ssize_t n = ::pread(fd, out.text.data() + done, out.text.size() - done, off_t(offset + int64_t(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the file shrank: parsing what was read reports it
    done += size_t(n);
  }
  ::close(fd);
  out.text.resize(done);
  return out;
}

FileIdentity identity_of(bool exists, const struct stat& st) {
  FileIdentity id;
  id.exists = exists;
  if (!exists) return id;
  id.device = uint64_t(st.st_dev);
  id.inode = uint64_t(st.st_ino);
  id.size = int64_t(st.st_size);
  id.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  id.ctime_ns = int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return id;
}

FileIdentity identity_of(const FileRead& f) { return identity_of(f.exists, f.st); }

FileIdentity identity_of(const std::string& path) {
  struct stat st {};
  return identity_of(::stat(path.c_str(), &st) == 0, st);
}

// Parses `text`, bounding its nesting: copying or destroying a deeper value would recurse past the stack.
// `where` names the file (and line) in errors.
json parse_bounded(const std::string& text, const std::string& where) {
  auto bounded_depth = [&](int depth, json::parse_event_t, json&) {
    check(depth <= kMaxJsonDepth, ErrorKind::Malformed,
          where + ": the tuning database nests deeper than " + std::to_string(kMaxJsonDepth) + " levels" + kLeftAsItIs);
    return true;
  };
  try {
    return json::parse(text, bounded_depth);
  } catch (const json::exception& e) {  // a syntax error, or a number beyond double (1e400)
    fail(ErrorKind::Malformed, where + ": the tuning database is corrupt, not valid JSON: " + e.what() + kLeftAsItIs);
  }
}

// The schema version of record `r`; other versions' records are kept, but their version must still be an
// int: never read modulo 2^32.
int record_version(const json& r, const std::string& where) {
  const int64_t version =
      (r.is_object() && r.contains("schema_version") ? json_int64(r["schema_version"]) : std::nullopt).value_or(-1);
  check(version >= 0 && version <= std::numeric_limits<int>::max(), ErrorKind::Malformed,
        where + ": not an object with an integer \"schema_version\" from 0 to " +
            std::to_string(std::numeric_limits<int>::max()) + kLeftAsItIs);
  return int(version);
}

// ---- schema version 1 ----------------------------------------------------------------------------------
// Version 1 described a workload by its key and by format and epilogue strings. Its records are read
// by rebuilding the workload from the key, which names every field (QMatMulWorkload::key,
// QConvWorkload::key), and are used only when the rebuilt workload has that very key.

// One word of an Int4Format::describe(); false for a word it does not know.
bool parse_format_word(const std::string& word, dsl::Int4Format& f) {
  int64_t n = 0;
  if (word == "int4" || word == "uint4")
    f.is_signed = word == "int4";
  else if (word == "zp")
    f.has_zero_point = true;
  else if (word == "f16" || word == "f32")
    f.f16_scale = word == "f16";
  else if (word == "per-n")
    f.per_n = true;
  else if (word == "per-k")
    f.k_group = 1;
  else if (word == "per-tensor") {
  } else if (std::sscanf(word.c_str(), "blocked(k,%" SCNd64 ")", &n) == 1)
    f.k_group = n, f.per_n = true;
  else if (std::sscanf(word.c_str(), "k-groups(%" SCNd64 ")", &n) == 1)
    f.k_group = n;
  else
    return false;
  return true;
}

std::optional<WorkloadDesc> workload_of_v1_key(const std::string& key, const std::string& target) {
  std::istringstream in(key);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  if (words.empty()) return std::nullopt;
  // "f32 weight" / "f16 weight": an unquantized weight.
  int float_bits = 0;
  for (size_t i = 0; i + 1 < words.size(); ++i)
    if (words[i + 1] == "weight" && (words[i] == "f32" || words[i] == "f16")) float_bits = words[i] == "f32" ? 32 : 16;
  std::optional<WorkloadDesc> desc;
  if (words[0] == "qmatmul" && words.size() >= 5) {
    dsl::QMatMulWorkload w;
    if (std::sscanf(key.c_str(), "qmatmul m%" SCNd64 " k%" SCNd64 " n%" SCNd64, &w.M, &w.K, &w.N) != 3)
      return std::nullopt;
    w.format.float_bits = float_bits;
    for (size_t i = 4; i < words.size(); ++i) {
      const std::string& word = words[i];
      if (word == "bias")
        w.has_bias = true;
      else if (word == "relu")
        w.epilogue = dsl::OutputEpilogue::relu();
      else if (word == "a8")
        w.int8_activations = true;
      else if (word == "a16")
        w.f16_activations = true;
      else if (!(float_bits && word == "weight") && !parse_format_word(word, w.format))
        return std::nullopt;
    }
    desc = workload_desc(w, target);
  } else if (words[0] == "qconv" && words.size() >= 12) {
    dsl::QConvWorkload w;
    if (std::sscanf(key.c_str(),
                    "qconv n%" SCNd64 " c%" SCNd64 " h%" SCNd64 " w%" SCNd64 " m%" SCNd64 " g%" SCNd64 " k%" SCNd64
                    "x%" SCNd64 " s%" SCNd64 "x%" SCNd64 " d%" SCNd64 "x%" SCNd64 " p%" SCNd64 ",%" SCNd64 ",%" SCNd64
                    ",%" SCNd64,
                    &w.N, &w.C, &w.H, &w.W, &w.M, &w.group, &w.KH, &w.KW, &w.SH, &w.SW, &w.DH, &w.DW, &w.pad_top,
                    &w.pad_left, &w.pad_bottom, &w.pad_right) != 16 ||
        w.group <= 0 || w.SH <= 0 || w.SW <= 0)
      return std::nullopt;
    w.format.float_bits = float_bits;
    for (size_t i = 11; i < words.size(); ++i) {
      const std::string& word = words[i];
      int axis = 0;
      int64_t block = 0;
      if (word == "bias")
        w.has_bias = true;
      else if (word == "int4" || word == "uint4")
        w.format.is_signed = word == "int4";
      else if (word == "zp")
        w.format.has_zero_point = true;
      else if (word == "f16" || word == "f32")
        w.format.f16_scale = word == "f16";
      else if (word == "per-tensor")
        w.format.grid = dsl::ConvInt4Format::Grid::PerTensor;
      else if (std::sscanf(word.c_str(), "per-axis(%d)", &axis) == 1)
        w.format.grid = dsl::ConvInt4Format::Grid::PerAxis, w.format.axis = axis;
      else if (std::sscanf(word.c_str(), "blocked(%d)", &axis) == 1)
        w.format.grid = dsl::ConvInt4Format::Grid::Blocked, w.format.axis = axis;
      else if (std::sscanf(word.c_str(), "b%" SCNd64, &block) == 1)
        w.block = block;
      else if (!(float_bits && word == "weight"))
        return std::nullopt;
    }
    auto extent = [](int64_t in, int64_t pads, int64_t k, int64_t d, int64_t s) {
      return (in + pads - d * (k - 1) - 1) / s + 1;
    };
    w.OH = extent(w.H, w.pad_top + w.pad_bottom, w.KH, w.DH, w.SH);
    w.OW = extent(w.W, w.pad_left + w.pad_right, w.KW, w.DW, w.SW);
    desc = workload_desc(w, target);
  }
  if (!desc || desc->key != key) return std::nullopt;
  return desc;
}

// A version-1 record as a current one; nullopt when it does not read as one (then it is kept as it is,
// like a record of any other version).
std::optional<TuningRecord> upgrade_v1_record(const json& r) {
  if (!(r.is_object() && r.contains("workload") && r["workload"].is_object() && r["workload"].contains("key") &&
        r["workload"]["key"].is_string() && r.contains("target") && r["target"].is_string()))
    return std::nullopt;
  std::optional<WorkloadDesc> desc =
      workload_of_v1_key(r["workload"]["key"].get<std::string>(), r["target"].get<std::string>());
  if (!desc) return std::nullopt;
  json upgraded = r;
  upgraded["workload"] = desc->to_json();
  upgraded["schema_version"] = kSchemaVersion;
  try {
    return TuningRecord::from_json(upgraded, "a version-1 record");
  } catch (const Error&) {
    return std::nullopt;
  }
}

TuningRecord read_record(const json& r, const std::string& where) {
  try {
    return TuningRecord::from_json(r, where);
  } catch (const Error& e) {
    fail(e.kind(), e.what() + kLeftAsItIs);
  }
}

// Opens (creating) `path` for appending; the caller closes it.
int open_for_append(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  check(fd >= 0, ErrorKind::Io, "cannot open " + path + " for writing: " + std::strerror(errno));
  return fd;
}

}  // namespace

TuningDatabase::Contents TuningDatabase::read_file(const std::string& path, FileIdentity* identity) {
  Contents contents;
  FileRead f = read_database_file(path, 0);
  *identity = identity_of(f);
  if (!f.exists) return contents;  // a new database
  json j = parse_bounded(f.text, path);
  check(j.is_object() && j.contains("format") && j["format"] == kFormatName, ErrorKind::Malformed,
        path + ": not a tetra tuning database (expected an object with \"format\": \"" + kFormatName + "\")" +
            kLeftAsItIs);
  // -1 stands for a missing or non-integer version (and for one beyond int64_t).
  const int64_t version = (j.contains("schema_version") ? json_int64(j["schema_version"]) : std::nullopt).value_or(-1);
  check(version >= 0, ErrorKind::Malformed,
        path + ": \"schema_version\" must be an integer from 0, not " +
            (j.contains("schema_version") ? j["schema_version"].dump() : std::string("missing")) + kLeftAsItIs);
  check(version <= kSchemaVersion, ErrorKind::Malformed,
        path + ": written with schema version " + std::to_string(version) + ", newer than this tetra's (" +
            std::to_string(kSchemaVersion) + "); use a newer tetra" + kLeftAsItIs);
  check(j.contains("records") && j["records"].is_array(), ErrorKind::Malformed,
        path + ": \"records\" must be an array" + kLeftAsItIs);

  const json& records = j["records"];
  for (size_t i = 0; i < records.size(); ++i) {
    std::string where = path + ": record " + std::to_string(i);
    const int version = record_version(records[i], where);
    std::optional<TuningRecord> upgraded = version == 1 ? upgrade_v1_record(records[i]) : std::nullopt;
    if (upgraded)
      contents.records.push_back(*upgraded);
    else if (version == kSchemaVersion)
      contents.records.push_back(read_record(records[i], where));
    else
      contents.other_schema.push_back(records[i]);  // another layout: kept verbatim, not read
  }
  return contents;
}

void TuningDatabase::read_journal(const std::string& path, JournalPosition* position, Contents* contents,
                                  int64_t* torn_bytes) {
  FileRead f = read_database_file(path, position->offset);
  position->file = identity_of(f);
  *torn_bytes = 0;
  if (!f.exists) return;
  // A line replayed after a compaction that was cut short is in records.json already: merging changes
  // nothing for records of this version, and other versions' records are kept once.
  std::set<std::string> other_schema;
  for (const json& r : contents->other_schema) other_schema.insert(r.dump());
  size_t start = 0;
  for (size_t end; (end = f.text.find('\n', start)) != std::string::npos; start = end + 1) {
    std::string where = path + ": line " + std::to_string(++position->lines);
    std::string line = f.text.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // a blank line holds no record
    json r = parse_bounded(line, where);
    const int version = record_version(r, where);
    std::optional<TuningRecord> upgraded = version == 1 ? upgrade_v1_record(r) : std::nullopt;
    if (upgraded)
      contents->records.push_back(*upgraded);
    else if (version == kSchemaVersion)
      contents->records.push_back(read_record(r, where));
    else if (other_schema.insert(r.dump()).second)
      contents->other_schema.push_back(r);
  }
  // What follows the last newline is a line a killed writer did not finish: never read.
  position->offset += int64_t(start);
  *torn_bytes = int64_t(f.text.size() - start);
}

void TuningDatabase::set_contents(Contents contents) {
  all_ = merge_record_sets(std::move(contents.records));
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
    note_ = dir_ + ": skipped " + std::to_string(skipped_) + " of " + std::to_string(all_.size() + other_schema_.size()) +
            " records (" + why + "); this tetra uses " + target_ + ", " + toolchain_ + ", schema version " +
            std::to_string(kSchemaVersion) + ". They stay in the database.";
}

TuningDatabase TuningDatabase::open(const std::string& dir, const std::string& target, const std::string& toolchain) {
  TuningDatabase db;
  db.dir_ = dir;
  db.target_ = target;
  db.toolchain_ = toolchain;
  // No lock. The journal first: a compaction by another process between the two reads then moves
  // lines this reader has already read into the records.json it reads next, and replaying them changes
  // nothing. (In the other order, the lines folded in after records.json was read would be lost.)
  Contents contents;
  JournalPosition journal;
  int64_t torn_bytes = 0;
  read_journal(db.journal_file(), &journal, &contents, &torn_bytes);
  FileIdentity records_file;
  Contents snapshot = read_file(db.file(), &records_file);
  contents.records.insert(contents.records.end(), snapshot.records.begin(), snapshot.records.end());
  std::set<std::string> other_schema;
  for (const json& r : contents.other_schema) other_schema.insert(r.dump());
  for (const json& r : snapshot.other_schema)
    if (!other_schema.count(r.dump())) contents.other_schema.push_back(r);
  db.set_contents(std::move(contents));
  return db;  // not synced: the two reads were not under the lock
}

std::vector<TuningRecord> TuningDatabase::records() const {
  std::vector<TuningRecord> out;
  for (const TuningRecord& r : all_)
    if (r.target == target_ && r.toolchain == toolchain_) out.push_back(r);
  return out;
}

namespace {

// The database folder's lock, held for the lifetime of the object; the folder is created first.
class DatabaseLock {
 public:
  explicit DatabaseLock(const std::string& dir) : lock_(lock_path(dir)) {}

 private:
  static std::string lock_path(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    check(!ec, ErrorKind::Io, "cannot create the tuning database folder " + dir + ": " + ec.message());
    return (fs::path(dir) / ".lock").string();
  }
  FileLock lock_;
};

}  // namespace

void TuningDatabase::sync_locked(int64_t* torn_bytes) {
  // Only the lines other writers appended since this object last read the journal, when that journal
  // was neither replaced nor cut short and records.json was not replaced; else everything, in any order
  // (no writer runs while the lock is held). A corrupt file throws here, and nothing is then written.
  FileIdentity journal_now = identity_of(journal_file());
  bool journal_kept = journal_now.exists && journal_.file.exists && journal_now.device == journal_.file.device &&
                      journal_now.inode == journal_.file.inode && journal_now.size >= journal_.offset;
  bool incremental = synced_ && journal_kept && identity_of(file()) == records_file_;
  synced_ = false;  // until this read succeeds
  FileIdentity records_file = records_file_;
  JournalPosition journal = incremental ? journal_ : JournalPosition{};
  Contents contents = incremental ? Contents{all_, other_schema_} : read_file(file(), &records_file);
  read_journal(journal_file(), &journal, &contents, torn_bytes);
  set_contents(std::move(contents));
  records_file_ = records_file;
  journal_ = journal;
  synced_ = true;
}

void TuningDatabase::commit(const std::vector<TuningRecord>& new_records) {
  for (const TuningRecord& r : new_records) {
    check(!r.workload.key.empty() && !r.target.empty() && !r.toolchain.empty(), ErrorKind::Invalid,
          "a tuning record needs a workload key, a target and a toolchain");
    check(r.schema_version == kSchemaVersion, ErrorKind::Invalid,
          "cannot commit a record of schema version " + std::to_string(r.schema_version));
  }
  DatabaseLock lock(dir_);
  int64_t torn_bytes = 0;
  sync_locked(&torn_bytes);
  if (new_records.empty()) return;

  std::string lines;
  for (const TuningRecord& r : new_records) lines += ordered_record(r).dump() + "\n";
  const std::string path = journal_file();
  const bool created = !journal_.file.exists;
  int fd = open_for_append(path);
  // Whatever part of the lines went out is cut off again on a failure (a torn line would be too).
  auto undo = [&] {
    if (::ftruncate(fd, off_t(journal_.offset)) == 0) ::fsync(fd);
    ::close(fd);
  };
  // errno is read right after the call that failed: a message built beside the call may see a later one.
  auto give_up = [&](const std::string& what) {
    std::string why = std::strerror(errno);
    undo();
    fail(ErrorKind::Io, what + ": " + why);
  };
  // A torn line left by a killed writer: cut it off so that the new lines start on a line of their own.
  if (torn_bytes > 0 && ::ftruncate(fd, off_t(journal_.offset)) != 0) give_up("cannot truncate " + path);
  try {
    write_all(fd, lines, path);
  } catch (...) {
    undo();
    throw;
  }
  if (::fsync(fd) != 0) give_up("cannot sync " + path);
  ::close(fd);
  if (created) sync_folder(dir_);

  // The lines are durable: this object now holds them too, and the journal has been read past them.
  Contents contents{all_, other_schema_};
  contents.records.insert(contents.records.end(), new_records.begin(), new_records.end());
  set_contents(std::move(contents));
  journal_.file = identity_of(path);
  journal_.offset += int64_t(lines.size());
  journal_.lines += int64_t(new_records.size());
  if (journal_.offset >= kCompactJournalBytes) compact_locked();
}

void TuningDatabase::compact_locked() {
  write_file_atomically(file(), records_file_text(all_, other_schema_));
  // records.json now holds every line: empty the journal. A crash before this point loses nothing, since
  // the lines replay onto records.json without changing it.
  int fd = ::open(journal_file().c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) {  // no journal: nothing to empty
    bool emptied = fd >= 0 && ::ftruncate(fd, 0) == 0 && ::fsync(fd) == 0;
    std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    check(emptied, ErrorKind::Io,
          "cannot empty " + journal_file() + " after compacting it into " + file() + ": " + why);
  }
  records_file_ = identity_of(file());
  journal_ = {identity_of(journal_file()), 0, 0};
}

// Under the lock, from the files as they are now (not as they were at open()), so that writes by other
// processes since then are kept: `edit` changes the records, and the result replaces records.json.
template <class Edit>
void TuningDatabase::rewrite(Edit edit) {
  DatabaseLock lock(dir_);
  int64_t torn_bytes = 0;
  sync_locked(&torn_bytes);
  set_contents({edit(all_), other_schema_});
  compact_locked();
}

void TuningDatabase::compact() {
  rewrite([](std::vector<TuningRecord> records) { return records; });
}

int TuningDatabase::prune(const PruneOptions& options) {
  int removed = 0;
  rewrite([&](std::vector<TuningRecord> records) {
    // Sorted by merge_record_sets: each workload's records together, best first.
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

int compute_units_in(const std::string& device_name) {
  static const std::regex units(R"(\b(\d+) (CUs|SMs)\b)");
  std::smatch m;
  return std::regex_search(device_name, m, units) ? std::stoi(m[1].str()) : 0;
}

TuningDatabase::Lookup TuningDatabase::best(const WorkloadDesc& workload, int compute_units) const {
  // Measurements first, the nearest shape's included: an estimate is used only where none exists. Of the
  // measurements, those from a GPU of this many compute units first.
  if (compute_units > 0)
    if (Lookup same = best_of(workload, true, compute_units); same.record) return same;
  if (Lookup measured = best_of(workload, true, 0); measured.record) {
    const int theirs = compute_units_in(measured.record->measured_on);
    if (compute_units > 0 && theirs > 0)
      measured.source += " (as nearest: measured on " + std::to_string(theirs) + " compute units, this GPU has " +
                         std::to_string(compute_units) + ")";
    return measured;
  }
  Lookup estimated = best_of(workload, false, 0);
  if (estimated.record) estimated.source += " (estimated)";
  return estimated;
}

TuningDatabase::Lookup TuningDatabase::best_of(const WorkloadDesc& workload, bool measured, int compute_units) const {
  const TuningRecord* exact = nullptr;
  const TuningRecord* nearest = nullptr;
  double nearest_distance = std::numeric_limits<double>::infinity();
  for (const TuningRecord& r : all_) {
    if (r.target != target_ || r.toolchain != toolchain_ || r.failed() || r.measured != measured) continue;
    if (compute_units > 0 && compute_units_in(r.measured_on) != compute_units) continue;
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
