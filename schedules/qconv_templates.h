// The schedule templates of tetra.QConv, joined across target families, and the one place that picks a
// template for a conv workload (as schedules/qmatmul_templates.h does for QMatMul). A template is a name,
// a family and four plain functions: its knob space, a default point, a check of knob conflicts, and
// apply(), which schedules a QConvDef. The CPU templates are in schedules/cpu/conv.h, the GPU one in
// schedules/gpu/conv.h.
#pragma once
#include <string>
#include <vector>

#include "dsl/qconv.h"
#include "dsl/schedule.h"
#include "dsl/target.h"

namespace tetra::schedules {

using dsl::QConvDef;
using dsl::QConvWorkload;
using dsl::Schedule;
using dsl::Status;
using dsl::TargetSpec;

struct QConvTemplate {
  std::string name;
  dsl::TargetFamily family;
  dsl::KnobSpace (*space)(const QConvWorkload&, const TargetSpec&);
  Schedule (*default_schedule)(const QConvWorkload&, const TargetSpec&);
  Status (*check_conflicts)(const QConvWorkload&, const Schedule&, const TargetSpec&);
  Status (*apply)(QConvDef&, const Schedule&, const TargetSpec&);
};

const std::vector<QConvTemplate>& qconv_templates();
const QConvTemplate* find_qconv_template(const std::string& name);

// The template for a workload: on a CPU, cpu_int4_depthwise_conv when Cg = 1, cpu_int4_dense_conv for
// group 1, else cpu_int4_grouped_conv; on an AMD GPU, gpu_int4_conv.
dsl::Result<const QConvTemplate*> qconv_template_for(const QConvWorkload& workload, const TargetSpec& target);
dsl::Result<Schedule> default_qconv_schedule(const QConvWorkload& workload, const TargetSpec& target);

// Everything that makes a schedule illegal for this workload and target, with the reason.
Status check_qconv_schedule(const QConvWorkload& workload, const Schedule& schedule, const TargetSpec& target);

}  // namespace tetra::schedules
