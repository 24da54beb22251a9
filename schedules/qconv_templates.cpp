#include "schedules/qconv_templates.h"

#include "schedules/cpu/conv.h"
#include "schedules/gpu/conv.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;

const std::vector<QConvTemplate>& qconv_templates() {
  // Every family's table, joined: template names are unique across them.
  static const std::vector<QConvTemplate> templates = [] {
    std::vector<QConvTemplate> all;
    for (const std::vector<QConvTemplate>* family : {&cpu_qconv_templates(), &gpu_qconv_templates()})
      all.insert(all.end(), family->begin(), family->end());
    return all;
  }();
  return templates;
}

const QConvTemplate* find_qconv_template(const std::string& name) {
  for (const QConvTemplate& t : qconv_templates())
    if (t.name == name) return &t;
  return nullptr;
}

namespace {
// The template a workload runs with on `target`'s family, or Failure.
dsl::Result<std::string> template_name(const QConvWorkload& w, const TargetSpec& target) {
  return std::string(target.is_cpu() ? cpu_qconv_template_for(w) : gpu_qconv_template_for(w));
}
}  // namespace

dsl::Result<const QConvTemplate*> qconv_template_for(const QConvWorkload& w, const TargetSpec& target) {
  dsl::Result<std::string> name = template_name(w, target);
  if (!name) return name.failure();
  return find_qconv_template(name.value());
}

dsl::Result<Schedule> default_qconv_schedule(const QConvWorkload& w, const TargetSpec& target) {
  dsl::Result<const QConvTemplate*> t = qconv_template_for(w, target);
  if (!t) return t.failure();
  return t.value()->default_schedule(w, target);
}

Status check_qconv_schedule(const QConvWorkload& w, const Schedule& schedule, const TargetSpec& target) {
  const QConvTemplate* t = find_qconv_template(schedule.template_name);
  if (!t) {
    std::string names;
    for (const QConvTemplate& k : qconv_templates()) names += (names.empty() ? "" : ", ") + k.name;
    return Failure{FailureKind::UnknownTemplate, schedule.template_name, "QConv templates are " + names};
  }
  if (!dsl::templates_serve(t->family, target.family))
    return Failure{FailureKind::WrongTarget, schedule.template_name,
                   "is a " + dsl::family_name(t->family) + " template; the target " + target.name + " is " +
                       dsl::family_name(target.family)};
  if (w.N <= 0 || w.C <= 0 || w.M <= 0 || w.OH <= 0 || w.OW <= 0 || w.KH <= 0 || w.KW <= 0 || w.group <= 0 ||
      w.C % w.group != 0 || w.M % w.group != 0)
    return Failure{FailureKind::Unsupported, w.key(), "sizes must be positive and group must divide C and M"};
  dsl::Result<std::string> expected = template_name(w, target);
  if (!expected) return expected.failure();
  if (t->name != expected.value())
    return Failure{FailureKind::Unsupported, w.key(),
                   "runs with " + expected.value() + ", not " + t->name +
                       " (the CPU templates are for depthwise, grouped and dense (group 1) convs)"};
  if (Status st = t->space(w, target).check(schedule); !st) return st;
  return t->check_conflicts(w, schedule, target);
}

}  // namespace tetra::schedules
