// An AMD device's target ID: found in the HIP runtime's device properties of either ROCm layout, and
// picking a HIP job's code object by its processor; a device no code object is built for is a failure
// naming its arch and the archs offered.
#include <catch2/catch.hpp>
#include <cstring>
#include <random>

#include "runtime/gpu/pick_code_object.h"

using tetra::gpu::pick_code_object;
using tetra::gpu::target_id_in_properties;

TEST_CASE("a HIP job picks the code object of the device's arch", "[gpu]") {
  const std::map<std::string, std::string> code_objects = {
      {"gfx90a", "k.gfx90a.co"}, {"gfx942", "k.gfx942.co"}, {"gfx1100", "k.gfx1100.co"}};
  // The target ID's features (sramecc, xnack) do not take part: only the processor before the first ':'.
  CHECK(pick_code_object(code_objects, "gfx942:sramecc+:xnack-").value() == "k.gfx942.co");
  CHECK(pick_code_object(code_objects, "gfx90a:xnack+").value() == "k.gfx90a.co");
  CHECK(pick_code_object(code_objects, "gfx1100").value() == "k.gfx1100.co");
  // A processor is matched whole: gfx1100's code object is not gfx110's, nor gfx11001's.
  CHECK_FALSE(pick_code_object(code_objects, "gfx110").ok());
  CHECK_FALSE(pick_code_object(code_objects, "gfx11001").ok());

  auto none = pick_code_object(code_objects, "gfx1030:xnack-");
  REQUIRE_FALSE(none.ok());
  CHECK(none.failure().kind == tetra::dsl::FailureKind::Unsupported);
  CHECK_THAT(none.failure().describe(), Catch::Contains("gfx1030:xnack-"));
  CHECK_THAT(none.failure().message, Catch::Contains("arch gfx1030"));
  CHECK_THAT(none.failure().message, Catch::Contains("gfx1100, gfx90a, gfx942"));
  CHECK_THAT(pick_code_object({}, "gfx942").failure().message, Catch::Contains("offers none"));
}

namespace {

// A hipDeviceProp_t of `bytes` with `arch` at `arch_offset`: the name first, every other byte random
// (numbers and raw bytes), except that no random run spells "gfx".
std::vector<char> device_properties(size_t bytes, size_t arch_offset, const std::string& arch, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<char> props(bytes);
  for (char& c : props) {
    c = char(random() % 256);
    if (c == 'g') c = 'h';
  }
  const char name[] = "AMD Instinct MI300X";
  std::memcpy(props.data(), name, sizeof name);
  std::memcpy(props.data() + arch_offset, arch.c_str(), arch.size() + 1);
  return props;
}

}  // namespace

TEST_CASE("the target ID is found in the HIP device properties of ROCm 5 and of ROCm 6", "[gpu]") {
  // ROCm 5.2: 792 bytes, gcnArchName at 396; ROCm 6 (hipDeviceProp_tR0600): 1472 bytes, at 1160. tetra
  // hands the runtime a larger zeroed buffer; the runtime fills its own layout's part.
  for (uint32_t seed : {1u, 2u, 3u}) {
    for (const auto& [bytes, offset] : {std::pair<size_t, size_t>{792, 396}, {1472, 1160}}) {
      std::vector<char> props = device_properties(bytes, offset, "gfx942:sramecc+:xnack-", seed);
      props.resize(16384, '\0');
      CHECK(target_id_in_properties(props) == "gfx942:sramecc+:xnack-");
      std::vector<char> rdna = device_properties(bytes, offset, "gfx1201", seed);
      CHECK(target_id_in_properties(rdna) == "gfx1201");
    }
  }
  // A "gfx" in the name is not the arch; a "gfx" run that is no target ID is skipped.
  std::vector<char> props(1472, '\0');
  std::memcpy(props.data(), "gfx-named device", 17);
  std::memcpy(props.data() + 600, "gfx?", 5);
  std::memcpy(props.data() + 1160, "gfx90a:xnack+", 14);
  CHECK(target_id_in_properties(props) == "gfx90a:xnack+");
  // None at all: "", which the driver reports as "the HIP runtime reported no gfx arch for device 0".
  CHECK(target_id_in_properties(std::vector<char>(1472, '\0')).empty());
  CHECK(tetra::gpu::is_target_id("gfx90a:sramecc+:xnack-"));
  CHECK_FALSE(tetra::gpu::is_target_id("gfx90a:xnack"));
  CHECK_FALSE(tetra::gpu::is_target_id("gfx"));
}
