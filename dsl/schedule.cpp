#include "dsl/schedule.h"

#include <algorithm>

namespace tetra::dsl {

std::string knob_value_str(const KnobValue& v) {
  if (const int64_t* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  return "\"" + std::get<std::string>(v) + "\"";
}

int64_t Schedule::get_int(const std::string& knob) const {
  auto it = knobs.find(knob);
  check(it != knobs.end() && std::holds_alternative<int64_t>(it->second), ErrorKind::Invalid,
        "schedule " + template_name + " has no integer knob '" + knob + "'");
  return std::get<int64_t>(it->second);
}

int64_t Schedule::get_int(const std::string& knob, int64_t absent) const {
  return knobs.count(knob) ? get_int(knob) : absent;
}

const std::string& Schedule::get_string(const std::string& knob) const {
  auto it = knobs.find(knob);
  check(it != knobs.end() && std::holds_alternative<std::string>(it->second), ErrorKind::Invalid,
        "schedule " + template_name + " has no string knob '" + knob + "'");
  return std::get<std::string>(it->second);
}

std::string Schedule::get_string(const std::string& knob, const std::string& absent) const {
  return knobs.count(knob) ? get_string(knob) : absent;
}

nlohmann::json Schedule::to_json() const {
  nlohmann::json k = nlohmann::json::object();
  for (const auto& [name, value] : knobs) {
    if (const int64_t* i = std::get_if<int64_t>(&value)) k[name] = *i;
    else k[name] = std::get<std::string>(value);
  }
  return nlohmann::json{{"template", template_name}, {"knobs", k}};
}

Result<Schedule> Schedule::from_json(const nlohmann::json& j) {
  auto bad = [](const std::string& why) { return Failure{FailureKind::BadJson, "schedule", why}; };
  if (!j.is_object()) return bad("a schedule is a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "template" && it.key() != "knobs") return bad("unexpected field '" + it.key() + "'");
  if (!j.contains("template") || !j["template"].is_string()) return bad("\"template\" must be a string");
  if (!j.contains("knobs") || !j["knobs"].is_object()) return bad("\"knobs\" must be an object");
  Schedule s;
  s.template_name = j["template"].get<std::string>();
  for (auto it = j["knobs"].begin(); it != j["knobs"].end(); ++it) {
    if (it->is_number_integer()) s.knobs[it.key()] = it->get<int64_t>();
    else if (it->is_string()) s.knobs[it.key()] = it->get<std::string>();
    else return bad("knob '" + it.key() + "' must be an integer or a string, not " + it->dump());
  }
  return s;
}

Result<Schedule> Schedule::parse(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Failure{FailureKind::BadJson, "schedule", "not valid JSON: " + text};
  return from_json(j);
}

std::string Schedule::to_string() const { return to_json().dump(); }

const std::vector<KnobInfo>& knob_vocabulary() {
  static const std::vector<KnobInfo> knobs = {
      // CPU and GPU
      {"tile_n", true, true, true, "output columns per tile; also the weight's panel width"},
      {"tile_m", true, true, true, "output rows per tile (register tile rows on a CPU)"},
      {"tile_k", true, true, true,
       "reduction length staged at once (w_stage=kblock, shared memory; GPU conv: input channels of taps)"},
      {"vector_width", true, true, true, "fp32 lanes per vector (CPU) or per-thread vector loads (GPU)"},
      {"unroll_k", true, true, true, "reduction steps unrolled in the inner loop"},
      {"split_k", true, true, true, "reduction split into this many parallel parts, summed at the end (rfactor)"},
      {"block_sums", true, true, true,
       "the k-block size: sum each block of a * (q - zp), then apply its scale once; 0: per weight"},
      {"zero_point", false, true, true,
       "with block sums, where q - zp is formed: per_weight, or per_block (sum a * u, u = q - zp + offset, minus "
       "offset * sum a)"},
      {"block", true, true, true, "the k-block A is quantized in, for int8 activations (fixed by the workload)"},
      {"w_stage", false, true, true, "where the dequantized weight is staged: inline, panel, kblock (conv: channel)"},
      {"a_stage", false, true, true, "how A reaches the inner loop: inline (in place), packed (transposed copy)"},
      {"tile_oh", true, true, true, "conv output rows per tile (GPU: threads in y)"},
      {"tile_ow", true, true, true, "conv output columns per tile (GPU: threads in x)"},
      // CPU only
      {"parallel", false, true, false,
       "the loop spread over threads: n (panels), m (row tiles; conv: planes), oh, none"},
      {"x_stage", false, true, false,
       "where a conv's zero-padded input is staged: inline, plane, tile, root (once, all channels)"},
      // GPU only (declared for the HIP/CUDA templates to come)
      {"gpu_blocks", false, false, true, "the loops mapped to GPU blocks: n, mn, mnk"},
      {"gpu_threads", true, false, true, "threads per block"},
      {"wavefront", true, false, true, "wavefront/warp width the schedule assumes: 32 or 64"},
      {"shared_stage", false, false, true, "what is staged in shared memory (LDS): none, a, w, aw"},
      {"thread_n", true, false, true, "output columns of each thread's register tile"},
      {"thread_m", true, false, true, "output rows of each thread's register tile (conv: output channels)"},
      {"thread_ow", true, false, true, "conv output columns of each thread's register tile"},
      {"threads_m", true, false, true, "conv: threads across output channels in a block, thread_m channels each"},
      {"load_bytes", true, false, true,
       "bytes of weight a GPU thread loads at once: 1 (2 weights) or 4 (8, Int4Layout::words)"},
  };
  return knobs;
}

const KnobInfo* find_knob_info(const std::string& name) {
  for (const KnobInfo& k : knob_vocabulary())
    if (k.name == name) return &k;
  return nullptr;
}

const KnobDecl* KnobSpace::find(const std::string& name) const {
  for (const KnobDecl& k : knobs)
    if (k.name == name) return &k;
  return nullptr;
}

double KnobSpace::size() const {
  double n = 1;
  for (const KnobDecl& k : knobs) n *= double(k.values.size());
  return n;
}

Status KnobSpace::check(const Schedule& s) const {
  if (s.template_name != template_name)
    return Failure{FailureKind::UnknownTemplate, s.template_name,
                   "this knob space belongs to template " + template_name};
  for (const auto& [name, value] : s.knobs) {
    const KnobDecl* decl = find(name);
    if (decl) {
      const KnobInfo* info = find_knob_info(name);
      bool want_int = info ? info->is_int : std::holds_alternative<int64_t>(decl->values.front());
      if (want_int != std::holds_alternative<int64_t>(value))
        return Failure{FailureKind::KnobType, name,
                       std::string("must be ") + (want_int ? "an integer" : "a string") + ", got " +
                           knob_value_str(value)};
      if (std::find(decl->values.begin(), decl->values.end(), value) == decl->values.end()) {
        std::string legal;
        for (const KnobValue& v : decl->values) legal += (legal.empty() ? "" : ", ") + knob_value_str(v);
        return Failure{FailureKind::KnobValue, name,
                       knob_value_str(value) + " is not legal for " + template_name + " here; legal: " + legal};
      }
      continue;
    }
    const KnobInfo* info = find_knob_info(name);
    bool gpu_template = family != TargetFamily::Cpu;
    if (info && (gpu_template ? !info->gpu : !info->cpu))
      return Failure{FailureKind::WrongTarget, name,
                     "is a " + std::string(info->gpu ? "GPU" : "CPU") + " knob; " + template_name + " targets " +
                         family_name(family)};
    return Failure{FailureKind::UnknownKnob, name, template_name + " has no such knob"};
  }
  for (const KnobDecl& decl : knobs)
    if (!s.knobs.count(decl.name) && !decl.absent)
      return Failure{FailureKind::MissingKnob, decl.name, "the schedule for " + template_name + " must set it"};
  return ok_status();
}

Schedule KnobSpace::sample(std::mt19937_64& rng) const {
  Schedule s;
  s.template_name = template_name;
  for (const KnobDecl& k : knobs) {
    std::uniform_int_distribution<size_t> pick(0, k.values.size() - 1);
    s.knobs[k.name] = k.values[pick(rng)];
  }
  return s;
}

std::vector<KnobValue> int_values(const std::vector<int64_t>& values) {
  return std::vector<KnobValue>(values.begin(), values.end());
}

std::vector<KnobValue> string_values(const std::vector<std::string>& values) {
  return std::vector<KnobValue>(values.begin(), values.end());
}

}  // namespace tetra::dsl
