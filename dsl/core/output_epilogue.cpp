#include "dsl/core/output_epilogue.h"

#include <cstdio>

namespace tetra::dsl {

std::string OutputEpilogue::describe() const {
  std::string act = activation;
  for (size_t i = 0; i < params.size(); ++i) {
    char v[32];
    std::snprintf(v, sizeof v, "%.9g", double(params[i]));  // round-trips a float
    act += (i == 0 ? "(" : ",") + std::string(v) + (i + 1 == params.size() ? ")" : "");
  }
  if (!residual) return act;
  if (act.empty()) return "+residual";
  return activation_first ? act + " +residual" : "+residual " + act;
}

}  // namespace tetra::dsl
