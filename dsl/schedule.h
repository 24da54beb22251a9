// A schedule is data: a template name and knob values. Templates (schedules/) declare the legal
// values of their knobs for a workload (a KnobSpace, like AutoTVM's define_knob/define_split), and
// apply a checked Schedule to a ComputeDef. The tuner samples spaces and stores Schedules as JSON:
//   {"template": "cpu_int4_gemm", "knobs": {"tile_n": 32, "tile_m": 12, "w_stage": "panel", ...}}
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "dsl/core/result.h"
#include "dsl/target.h"

namespace tetra::dsl {

using KnobValue = std::variant<int64_t, std::string>;
std::string knob_value_str(const KnobValue& value);  // 32 or "panel" (quoted)

struct Schedule {
  std::string template_name;
  std::map<std::string, KnobValue> knobs;

  // Knob accessors for templates, after KnobSpace::check has passed; throw tetra::Error otherwise.
  int64_t get_int(const std::string& knob) const;
  int64_t get_int(const std::string& knob, int64_t absent) const;  // `absent` when the schedule lacks it
  const std::string& get_string(const std::string& knob) const;
  std::string get_string(const std::string& knob, const std::string& absent) const;

  nlohmann::json to_json() const;
  static Result<Schedule> from_json(const nlohmann::json& j);
  static Result<Schedule> parse(const std::string& json_text);
  std::string to_string() const;  // compact JSON, for logs and records

  bool operator==(const Schedule& o) const { return template_name == o.template_name && knobs == o.knobs; }
};

// The knob names tetra knows, which target families they apply to, and their value type. A template
// declares a subset; a knob of another family is rejected as WrongTarget (gpu_threads on a CPU).
struct KnobInfo {
  std::string name;
  bool is_int;
  bool cpu, gpu;  // legal on CPU templates, on GPU (hip/cuda) templates
  std::string doc;
};
const std::vector<KnobInfo>& knob_vocabulary();
const KnobInfo* find_knob_info(const std::string& name);

// One knob's legal values for one workload and target.
struct KnobDecl {
  std::string name;
  std::vector<KnobValue> values;  // non-empty
  // For knobs added after schedules were stored: what a schedule without the knob means (it is then
  // legal without it). Unset: the knob is required.
  std::optional<KnobValue> absent = std::nullopt;
};

// A template's knobs for one workload and target; conflicts between knobs are the template's to check.
struct KnobSpace {
  std::string template_name;
  TargetFamily family = TargetFamily::Cpu;
  std::vector<KnobDecl> knobs;

  const KnobDecl* find(const std::string& name) const;
  double size() const;  // the number of points (the product of the value counts)
  // Every knob present, of the right type and in its list; no unknown knobs, no knobs of another family.
  Status check(const Schedule& schedule) const;
  // A uniformly random point (knob conflicts are not excluded: check them with the template).
  Schedule sample(std::mt19937_64& rng) const;
};

// Helpers for declaring spaces.
std::vector<KnobValue> int_values(const std::vector<int64_t>& values);
std::vector<KnobValue> string_values(const std::vector<std::string>& values);

}  // namespace tetra::dsl
