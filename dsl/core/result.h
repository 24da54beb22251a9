// Failure as data: what the DSL, the schedules and the target parser return instead of throwing.
// A tuner skips a candidate whose Result is not ok() and records failure().message.
#pragma once
#include <string>
#include <utility>
#include <variant>

#include "importer/error.h"

namespace tetra::dsl {

enum class FailureKind {
  BadTarget,        // a target string that does not parse
  UnknownTemplate,  // a schedule names a template that does not exist
  UnknownKnob,      // a knob the template does not declare
  MissingKnob,      // a knob the template needs and the schedule lacks
  KnobType,         // an int where a string is expected, or the reverse
  KnobValue,        // a value outside the knob's declared space
  KnobConflict,     // values legal one by one, illegal together (tile_n % vector_width != 0)
  WrongTarget,      // a template or knob for another target family (gpu_threads on a CPU)
  Unsupported,      // a workload the template does not handle
  BadJson,          // a schedule record that is not valid JSON of the expected shape
  Compile,          // Halide refused the scheduled pipeline
  Run,              // the compiled pipeline failed at run time (bad buffer shapes)
};

std::string failure_kind_name(FailureKind kind);

struct Failure {
  FailureKind kind;
  std::string subject;  // the knob, template or target string at fault; may be empty
  std::string message;  // a sentence for a person: what is wrong and what would be legal

  std::string describe() const {
    return failure_kind_name(kind) + (subject.empty() ? "" : " '" + subject + "'") + ": " + message;
  }
};

// A value or the Failure that prevented it. value() on a failed Result throws tetra::Error (Invalid)
// carrying the description, so misuse is an error message, never a crash.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose, `return value;`
  Result(Failure failure) : v_(std::move(failure)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const& {
    check_ok();
    return std::get<0>(v_);
  }
  T&& value() && {
    check_ok();
    return std::get<0>(std::move(v_));
  }
  const Failure& failure() const { return std::get<1>(v_); }

 private:
  void check_ok() const {
    if (!ok()) fail(ErrorKind::Invalid, failure().describe());
  }
  std::variant<T, Failure> v_;
};

// Ok or a Failure, for checks that produce nothing.
using Status = Result<std::monostate>;
inline Status ok_status() { return Status(std::monostate{}); }

}  // namespace tetra::dsl
