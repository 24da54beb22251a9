// The schedule templates of tetra.QMatMul, and the one place that picks a template for a workload.
//
// A template is a name and five plain functions: its knob space for a workload and target, a
// heuristic default point in that space, a check of the knob conflicts the space cannot express,
// the weight layout a schedule needs, and apply(), which schedules a QMatMulDef. Every template's
// "tile_n" knob is also the width of the weight's panels (dsl/int4.h): a weight is packed for a
// kernel, at load time.
#pragma once
#include <string>
#include <vector>

#include "dsl/core/kernel_spec.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"
#include "dsl/target.h"

namespace tetra::schedules {

using dsl::QMatMulDef;
using dsl::QMatMulWorkload;
using dsl::Schedule;
using dsl::Status;
using dsl::TargetSpec;

struct QMatMulTemplate {
  std::string name;
  dsl::TargetFamily family;
  // The activations of the workloads it serves (dsl::ActivationMode). A float32 template also serves
  // float16 workloads (exact on float16 values); the others serve only their own.
  dsl::ActivationMode activations;
  dsl::KnobSpace (*space)(const QMatMulWorkload&, const TargetSpec&);
  Schedule (*default_schedule)(const QMatMulWorkload&, const TargetSpec&);
  Status (*check_conflicts)(const QMatMulWorkload&, const Schedule&, const TargetSpec&);
  dsl::Int4Layout (*layout)(const Schedule&);
  Status (*apply)(QMatMulDef&, const Schedule&, const TargetSpec&);

  bool int8() const { return activations == dsl::ActivationMode::Int8; }
  bool serves(const QMatMulWorkload& workload) const;
};

const std::vector<QMatMulTemplate>& qmatmul_templates();
const QMatMulTemplate* find_qmatmul_template(const std::string& name);

// The default schedule for a workload: the target family's default template
// (cpu_default_qmatmul_template in schedules/cpu/templates.h) at its default knobs.
dsl::Result<Schedule> default_qmatmul_schedule(const QMatMulWorkload& workload, const TargetSpec& target);

// Everything that makes a schedule illegal for this workload and target, with the reason: an unknown
// template, one for another target family, a knob outside the template's space, a knob conflict.
Status check_qmatmul_schedule(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);

// What a target runs for a requested QMatMul: dsl::resolve (dsl/spec_resolve.h) applied to the
// workload's kernel spec, the shapes kept.
struct ResolvedQMatMul {
  QMatMulWorkload workload;
  std::string note;  // "float32 activations: ..." when int8 ones were asked for and cannot run; else empty
};
ResolvedQMatMul resolve_qmatmul(const QMatMulWorkload& requested, const TargetSpec& target);

// The Halide target a QMatMul kernel of `workload` is compiled for.
Halide::Target qmatmul_halide_target(const QMatMulWorkload& workload, const TargetSpec& target);

// The weight layout a checked schedule needs.
dsl::Int4Layout layout_of(const Schedule& schedule);

}  // namespace tetra::schedules
