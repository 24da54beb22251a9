// Buffer contents made from a seed, the same on every machine: a device job (tools/device_main.cpp) can
// make inputs too large to ship, and the machine that wrote the job makes the same bytes for its
// reference. splitmix64, not <random>, whose distributions differ between standard libraries.
#pragma once
#include <cstdint>
#include <string>

namespace tetra::dsl {

// Fills `count` elements of `type` ("f32", "f16", "u8", "i8", ... as in KernelParam::type): floats
// uniform in [lo, hi), integers uniform over [lo, hi] (lo and hi rounded). false for an unknown type.
bool seeded_fill(void* data, int64_t count, const std::string& type, uint64_t seed, double lo, double hi);

}  // namespace tetra::dsl
