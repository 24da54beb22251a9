// A HIP job's code objects by arch: the device's target ID picks one by its processor, and a device no
// code object is built for is a failure naming its arch and the archs offered.
#include <catch2/catch.hpp>

#include "runtime/gpu/pick_code_object.h"

using tetra::gpu::pick_code_object;

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
