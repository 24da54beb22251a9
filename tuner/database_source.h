// The tuning database as the runtime's ScheduleSource: exact workload, else the nearest shape.
#pragma once
#include "runtime/schedule_source.h"
#include "tuner/database.h"

namespace tetra::tuner {

class DatabaseScheduleSource : public ScheduleSource {
 public:
  explicit DatabaseScheduleSource(const TuningDatabase& db) : db_(db) {}
  std::optional<ScheduleChoice> for_qmatmul(const dsl::QMatMulWorkload& workload) const override {
    TuningDatabase::Lookup hit = db_.best(workload_desc(workload, db_.target()));
    if (!hit.schedule) return std::nullopt;
    return ScheduleChoice{*hit.schedule, "database " + hit.source};
  }
  std::optional<ScheduleChoice> for_qconv(const dsl::QConvWorkload& workload) const override {
    TuningDatabase::Lookup hit = db_.best(workload_desc(workload, db_.target()));
    if (!hit.schedule) return std::nullopt;
    return ScheduleChoice{*hit.schedule, "database " + hit.source};
  }

 private:
  const TuningDatabase& db_;
};

}  // namespace tetra::tuner
