#include "dsl/core/output_epilogue.h"

#include <cstdio>

namespace tetra::dsl {

std::string OutputEpilogue::describe() const {
  std::string s = residual ? "+residual" : "";
  if (activation.empty()) return s;
  s += (s.empty() ? "" : " ") + activation;
  for (size_t i = 0; i < params.size(); ++i) {
    char v[32];
    std::snprintf(v, sizeof v, "%.9g", double(params[i]));  // round-trips a float
    s += (i == 0 ? "(" : ",") + std::string(v) + (i + 1 == params.size() ? ")" : "");
  }
  return s;
}

}  // namespace tetra::dsl
