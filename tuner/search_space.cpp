#include "tuner/search_space.h"

#include "schedules/cpu/conv.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::tuner {

SearchSpace::SearchSpace(const dsl::QMatMulWorkload& workload, const dsl::TargetSpec& target)
    : workload_(workload), target_(target) {
  for (const schedules::QMatMulTemplate& t : schedules::qmatmul_templates())
    if (dsl::templates_serve(t.family, target.family) && t.serves(workload)) {
      spaces_.push_back(t.space(workload, target));
      if (dsl::Schedule d = t.default_schedule(workload, target); legal(d)) defaults_.push_back(std::move(d));
    }
}

SearchSpace::SearchSpace(const dsl::QConvWorkload& conv, const dsl::QMatMulWorkload& gemm_view,
                         const dsl::TargetSpec& target)
    : workload_(gemm_view), conv_(conv), target_(target) {
  auto t = schedules::qconv_template_for(conv, target);
  if (!t.ok()) return;
  spaces_.push_back(t.value()->space(conv, target));
  if (dsl::Schedule d = t.value()->default_schedule(conv, target); legal(d)) defaults_.push_back(std::move(d));
}

double SearchSpace::size() const {
  double total = 0;
  for (const dsl::KnobSpace& s : spaces_) total += s.size();
  return total;
}

bool SearchSpace::legal(const dsl::Schedule& s) const {
  if (conv_) return schedules::check_qconv_schedule(*conv_, s, target_).ok();
  return schedules::check_qmatmul_schedule(workload_, s, target_).ok();
}

const dsl::KnobSpace* SearchSpace::space_of(const std::string& name) const {
  for (const dsl::KnobSpace& s : spaces_)
    if (s.template_name == name) return &s;
  return nullptr;
}

std::optional<dsl::Schedule> SearchSpace::random(std::mt19937_64& rng) const {
  if (spaces_.empty()) return std::nullopt;
  for (int attempt = 0; attempt < 8; ++attempt) {
    // Every template gets an equal share, then a legal point of it: templates differ in structure, and
    // neither the number of knob values a template exposes nor the share of them its checks refuse says
    // anything about how fast it is. Sampling in proportion to the spaces' sizes gave a small template a
    // few trials in a hundred; redrawing the template after an illegal point, too few to one whose knobs
    // conflict often.
    const dsl::KnobSpace& space = spaces_[std::uniform_int_distribution<size_t>(0, spaces_.size() - 1)(rng)];
    for (int tries = 0; tries < 50; ++tries) {
      dsl::Schedule s = space.sample(rng);
      if (legal(s)) return s;
    }
  }
  return std::nullopt;
}

std::vector<dsl::Schedule> SearchSpace::enumerate(size_t limit) const {
  if (size() > static_cast<double>(limit)) return {};
  std::vector<dsl::Schedule> out;
  for (const dsl::KnobSpace& space : spaces_) {
    std::vector<size_t> index(space.knobs.size(), 0);
    while (true) {
      dsl::Schedule s{space.template_name, {}};
      for (size_t k = 0; k < space.knobs.size(); ++k) s.knobs[space.knobs[k].name] = space.knobs[k].values[index[k]];
      if (legal(s)) out.push_back(s);
      size_t k = 0;
      while (k < index.size() && ++index[k] == space.knobs[k].values.size()) index[k++] = 0;
      if (k == index.size()) break;
    }
  }
  return out;
}

std::optional<dsl::Schedule> SearchSpace::mutate(const dsl::Schedule& s, std::mt19937_64& rng) const {
  const dsl::KnobSpace* space = space_of(s.template_name);
  if (!space || space->knobs.empty()) return std::nullopt;
  for (int attempt = 0; attempt < 50; ++attempt) {
    const dsl::KnobDecl& knob = space->knobs[std::uniform_int_distribution<size_t>(0, space->knobs.size() - 1)(rng)];
    if (knob.values.size() < 2) continue;
    dsl::Schedule m = s;
    m.knobs[knob.name] = knob.values[std::uniform_int_distribution<size_t>(0, knob.values.size() - 1)(rng)];
    if (!(m == s) && legal(m)) return m;
  }
  return std::nullopt;
}

std::optional<dsl::Schedule> SearchSpace::crossover(const dsl::Schedule& a, const dsl::Schedule& b,
                                                    std::mt19937_64& rng) const {
  if (a.template_name != b.template_name) return std::nullopt;
  for (int attempt = 0; attempt < 20; ++attempt) {
    dsl::Schedule c = a;
    for (auto& [name, value] : c.knobs)
      if (rng() & 1) {
        auto other = b.knobs.find(name);
        if (other != b.knobs.end()) value = other->second;
      }
    if (legal(c)) return c;
  }
  return std::nullopt;
}

}  // namespace tetra::tuner
