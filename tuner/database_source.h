// The tuning database as the runtime's ScheduleSource: exact workload, else the nearest shape.
#pragma once
#include "runtime/schedule_source.h"
#include "tuner/database.h"

namespace tetra::tuner {

class DatabaseScheduleSource : public ScheduleSource {
 public:
  // `compute_units` > 0: the GPU the schedules are for (TuningDatabase::best).
  explicit DatabaseScheduleSource(const TuningDatabase& db, int compute_units = 0)
      : db_(db), compute_units_(compute_units) {}
  std::optional<ScheduleChoice> for_qmatmul(const dsl::QMatMulWorkload& workload) const override {
    TuningDatabase::Lookup hit = db_.best(workload_desc(workload, db_.target()), compute_units_);
    if (!hit.schedule) return std::nullopt;
    return ScheduleChoice{*hit.schedule, "database " + hit.source};
  }
  std::optional<ScheduleChoice> for_qconv(const dsl::QConvWorkload& workload) const override {
    TuningDatabase::Lookup hit = db_.best(workload_desc(workload, db_.target()), compute_units_);
    if (!hit.schedule) return std::nullopt;
    return ScheduleChoice{*hit.schedule, "database " + hit.source};
  }

 private:
  const TuningDatabase& db_;
  int compute_units_ = 0;
};

}  // namespace tetra::tuner
