// Reading the fields of a JSON object with every type and range checked: a field that is missing or of
// the wrong type becomes a Failure naming the object and the field, never a crash or a silent default.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsl/core/result.h"

namespace tetra::dsl {

class JsonReader {
 public:
  // `what` names the object in messages: "workload", "kernel spec".
  JsonReader(const nlohmann::json& j, std::string what) : j_(j), what_(std::move(what)) {
    if (!j_.is_object()) fail_with("a " + what_ + " is a JSON object, not " + j_.dump());
  }

  // The first failure, if any field was wrong; the getters return zero values after one.
  bool ok() const { return failure_.empty(); }
  Failure failure() const { return Failure{FailureKind::BadJson, what_, failure_}; }

  int64_t integer(const std::string& key, int64_t min, int64_t max) {
    const nlohmann::json* v = field(key);
    if (!v) return 0;
    if (!v->is_number_integer()) return wrong(key, "an integer"), 0;
    int64_t x = v->get<int64_t>();
    if (x < min || x > max)
      return wrong(key, "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]"), 0;
    return x;
  }
  bool flag(const std::string& key) {
    const nlohmann::json* v = field(key);
    if (!v) return false;
    if (!v->is_boolean()) return wrong(key, "true or false"), false;
    return v->get<bool>();
  }
  std::string text(const std::string& key) {
    const nlohmann::json* v = field(key);
    if (!v) return "";
    if (!v->is_string()) return wrong(key, "a string"), "";
    return v->get<std::string>();
  }
  // A string field that must be one of `choices`; returns its index.
  int choice(const std::string& key, const std::vector<std::string>& choices) {
    std::string s = text(key);
    for (size_t i = 0; i < choices.size(); ++i)
      if (s == choices[i]) return int(i);
    if (ok()) {
      std::string all;
      for (const std::string& c : choices) all += (all.empty() ? "\"" : ", \"") + c + "\"";
      wrong(key, "one of " + all);
    }
    return 0;
  }
  const nlohmann::json* field(const std::string& key) {
    if (!ok()) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end()) return fail_with("the field \"" + key + "\" is missing"), nullptr;
    return &*it;
  }
  void fail_with(const std::string& why) {
    if (ok()) failure_ = why;
  }

 private:
  void wrong(const std::string& key, const std::string& expected) {
    fail_with("\"" + key + "\" must be " + expected + ", not " + j_.at(key).dump());
  }

  const nlohmann::json& j_;
  std::string what_;
  std::string failure_;
};

}  // namespace tetra::dsl
