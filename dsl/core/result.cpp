#include "dsl/core/result.h"

namespace tetra::dsl {

std::string failure_kind_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::BadTarget: return "bad target";
    case FailureKind::UnknownTemplate: return "unknown template";
    case FailureKind::UnknownKnob: return "unknown knob";
    case FailureKind::MissingKnob: return "missing knob";
    case FailureKind::KnobType: return "knob type";
    case FailureKind::KnobValue: return "knob value";
    case FailureKind::KnobConflict: return "knob conflict";
    case FailureKind::WrongTarget: return "wrong target";
    case FailureKind::Unsupported: return "unsupported";
    case FailureKind::BadJson: return "bad json";
    case FailureKind::Compile: return "compile";
    case FailureKind::Run: return "run";
  }
  return "failure";
}

}  // namespace tetra::dsl
