// Seeded buffer contents (dsl/core/seeded_fill.h): a GPU check bundle is written on one machine and its
// inputs made on another from the same seeds, so the values are fixed across machines and versions.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "dsl/core/seeded_fill.h"
#include "importer/dtype.h"

using tetra::dsl::seeded_fill;

TEST_CASE("seeded_fill: the same values for a seed everywhere, within the asked range", "[gpu]") {
  // The stream is part of the bundle format: these values may never change.
  std::vector<float> f(3);
  REQUIRE(seeded_fill(f.data(), 3, "f32", 7, -1.0, 1.0));
  CHECK(f[0] == Approx(-0.220340505).epsilon(1e-7));
  CHECK(f[1] == Approx(-0.966423392).epsilon(1e-7));
  CHECK(f[2] == Approx(0.801521361).epsilon(1e-7));
  std::vector<uint8_t> b(4);
  REQUIRE(seeded_fill(b.data(), 4, "u8", 7, 0, 255));
  CHECK(b == std::vector<uint8_t>{215, 28, 2, 203});

  // Every byte value occurs; integers stay in [lo, hi]; floats in [lo, hi).
  std::vector<uint8_t> bytes(1 << 16);
  REQUIRE(seeded_fill(bytes.data(), int64_t(bytes.size()), "u8", 1, 0, 255));
  std::vector<int> seen(256, 0);
  for (uint8_t v : bytes) ++seen[v];
  CHECK(std::count(seen.begin(), seen.end(), 0) == 0);
  std::vector<int8_t> small(4096);
  REQUIRE(seeded_fill(small.data(), int64_t(small.size()), "i8", 2, -3, 5));
  CHECK(*std::min_element(small.begin(), small.end()) == -3);
  CHECK(*std::max_element(small.begin(), small.end()) == 5);
  std::vector<uint16_t> halves(4096);
  REQUIRE(seeded_fill(halves.data(), int64_t(halves.size()), "f16", 3, 0.002, 0.02));
  for (uint16_t h : halves) {
    float v = tetra::half_to_float(h);
    CHECK((v >= 0.0019f && v <= 0.0201f));
  }
  // Another seed, other values; an unknown type is refused.
  std::vector<float> g(3);
  REQUIRE(seeded_fill(g.data(), 3, "f32", 8, -1.0, 1.0));
  CHECK(g != f);
  CHECK_FALSE(seeded_fill(g.data(), 3, "f64", 8, -1.0, 1.0));
}
