// Where the Halide backend gets a kernel's schedule: a tuning database (tuner/) implements this;
// without one, or when it has no usable record, the template's default is used and said so.
#pragma once
#include <optional>
#include <string>

#include "dsl/core/qconv_format.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"

namespace tetra {

struct ScheduleChoice {
  dsl::Schedule schedule;
  std::string source;  // for --explain: "database exact", "database nearest: <workload key>"
};

class ScheduleSource {
 public:
  virtual ~ScheduleSource() = default;
  virtual std::optional<ScheduleChoice> for_qmatmul(const dsl::QMatMulWorkload& workload) const = 0;
  virtual std::optional<ScheduleChoice> for_qconv(const dsl::QConvWorkload& workload) const = 0;
};

}  // namespace tetra
