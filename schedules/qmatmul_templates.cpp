#include "schedules/qmatmul_templates.h"

#include "dsl/spec_resolve.h"
#include "schedules/cpu/templates.h"
#include "schedules/gpu/templates.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;

const std::vector<QMatMulTemplate>& qmatmul_templates() {
  // Every family's table (schedules/<family>/templates.h), joined: template names are unique across them.
  static const std::vector<QMatMulTemplate> templates = [] {
    std::vector<QMatMulTemplate> all;
    for (const std::vector<QMatMulTemplate>* family : {&cpu_qmatmul_templates(), &gpu_qmatmul_templates()})
      all.insert(all.end(), family->begin(), family->end());
    return all;
  }();
  return templates;
}

const QMatMulTemplate* find_qmatmul_template(const std::string& name) {
  for (const QMatMulTemplate& t : qmatmul_templates())
    if (t.name == name) return &t;
  return nullptr;
}

dsl::Result<Schedule> default_qmatmul_schedule(const QMatMulWorkload& workload, const TargetSpec& target) {
  if (!target.is_cpu()) {
    return find_qmatmul_template(gpu_default_qmatmul_template(workload))->default_schedule(workload, target);
  }
  if (workload.int8_activations && !target.has_int8_dot())
    return Failure{FailureKind::WrongTarget, target.name, "has no int8 dot products for int8 activations"};
  return find_qmatmul_template(cpu_default_qmatmul_template(workload))->default_schedule(workload, target);
}

Status check_qmatmul_schedule(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target) {
  const QMatMulTemplate* t = find_qmatmul_template(schedule.template_name);
  if (!t) {
    std::string names;
    for (const QMatMulTemplate& k : qmatmul_templates()) names += (names.empty() ? "" : ", ") + k.name;
    return Failure{FailureKind::UnknownTemplate, schedule.template_name, "QMatMul templates are " + names};
  }
  if (!dsl::templates_serve(t->family, target.family))
    return Failure{FailureKind::WrongTarget, schedule.template_name,
                   "is a " + dsl::family_name(t->family) + " template; the target " + target.name + " is " +
                       dsl::family_name(target.family)};
  if (!t->serves(workload))
    return Failure{FailureKind::Unsupported, schedule.template_name,
                   "is for " + dsl::activation_mode_name(t->activations) + " activations; " + workload.key() + " has " +
                       dsl::activation_mode_name(dsl::activation_mode(workload)) + " ones"};
  if (t->int8() && !target.has_int8_dot())
    return Failure{FailureKind::WrongTarget, schedule.template_name,
                   "needs int8 dot products (AVX512-VNNI), which " + target.name + " lacks"};
  if (workload.K <= 0 || workload.N <= 0 || workload.M <= 0)
    return Failure{FailureKind::Unsupported, workload.key(), "M, K and N must be positive"};
  if (Status st = t->space(workload, target).check(schedule); !st) return st;
  return t->check_conflicts(workload, schedule, target);
}

bool QMatMulTemplate::serves(const QMatMulWorkload& workload) const {
  const dsl::ActivationMode mode = dsl::activation_mode(workload);
  return activations == mode || (activations == dsl::ActivationMode::Float32 && mode == dsl::ActivationMode::Float16);
}

ResolvedQMatMul resolve_qmatmul(const QMatMulWorkload& requested, const TargetSpec& target) {
  dsl::ResolvedSpec resolved = dsl::resolve(dsl::kernel_spec(requested, target.name), target);
  QMatMulWorkload workload = requested;
  workload.format = resolved.spec.weight;
  workload.int8_activations = resolved.spec.activations == dsl::ActivationMode::Int8;
  workload.f16_activations = resolved.spec.activations == dsl::ActivationMode::Float16;
  return {workload, resolved.note};
}

Halide::Target qmatmul_halide_target(const QMatMulWorkload& workload, const TargetSpec& target) {
  return workload.int8_activations ? dsl::int8_dot_target(target) : target.halide;
}

dsl::Int4Layout layout_of(const Schedule& schedule) {
  const QMatMulTemplate* t = find_qmatmul_template(schedule.template_name);
  check(t != nullptr, ErrorKind::Invalid, "unknown template " + schedule.template_name);
  return t->layout(schedule);
}

}  // namespace tetra::schedules
