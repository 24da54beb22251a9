#include "dsl/core/seeded_fill.h"

#include <cmath>
#include <cstring>

#include "importer/dtype.h"

namespace tetra::dsl {

namespace {

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <class T>
void fill_integers(void* data, int64_t count, uint64_t state, double lo, double hi) {
  const int64_t low = int64_t(std::llround(lo)), span = int64_t(std::llround(hi)) - low + 1;
  T* out = static_cast<T*>(data);
  for (int64_t i = 0; i < count; ++i) out[i] = T(low + int64_t(splitmix64(&state) % uint64_t(span)));
}

}  // namespace

bool seeded_fill(void* data, int64_t count, const std::string& type, uint64_t seed, double lo, double hi) {
  uint64_t state = seed;
  auto uniform = [&] { return lo + (hi - lo) * double(splitmix64(&state) >> 11) * 0x1.0p-53; };
  if (type == "f32") {
    float* out = static_cast<float*>(data);
    for (int64_t i = 0; i < count; ++i) out[i] = float(uniform());
  } else if (type == "f16") {
    uint16_t* out = static_cast<uint16_t*>(data);
    for (int64_t i = 0; i < count; ++i) out[i] = double_to_half(uniform());
  } else if (type == "u8") {
    fill_integers<uint8_t>(data, count, state, lo, hi);
  } else if (type == "i8") {
    fill_integers<int8_t>(data, count, state, lo, hi);
  } else if (type == "u16") {
    fill_integers<uint16_t>(data, count, state, lo, hi);
  } else if (type == "i16") {
    fill_integers<int16_t>(data, count, state, lo, hi);
  } else if (type == "u32") {
    fill_integers<uint32_t>(data, count, state, lo, hi);
  } else if (type == "i32") {
    fill_integers<int32_t>(data, count, state, lo, hi);
  } else {
    return false;
  }
  return true;
}

}  // namespace tetra::dsl
