// The per-block scale search of tetra quantize: never worse than max-abs scaling, and better on
// weights with outliers; codes stay in range and fp16 scales reproduce the measured error.
#include <catch2/catch.hpp>

#include <cmath>

#include "tests/test_support.h"
#include "tools/quantize/weight_quantizer.h"

using namespace tetra;
using namespace tetra::test;

namespace {

// Normal-ish weights (sum of uniforms) with a few large outliers, as trained layers have.
Tensor heavy_tailed(DType dtype, const Shape& shape) {
  Tensor a = random_tensor(DType::Float32, shape), b = random_tensor(DType::Float32, shape),
         c = random_tensor(DType::Float32, shape);
  Tensor w(dtype, shape);
  for (int64_t i = 0; i < w.size(); ++i) w.set(i, (a.get(i) + b.get(i) + c.get(i)) * (i % 97 == 0 ? 3.0 : 0.3));
  return w;
}

}  // namespace

TEST_CASE("clip-ratio search lowers the reconstruction error of every layout", "[quantize]") {
  for (DType dtype : {DType::Float32, DType::Float16}) {
    for (bool asymmetric : {false, true}) {
      INFO(dtype_name(dtype) << (asymmetric ? " asymmetric" : " symmetric"));
      Tensor w = heavy_tailed(dtype, {96, 24});
      quantize::WeightQuantOptions plain{asymmetric, false}, searched{asymmetric, true};
      for (auto [axis, block] : {std::pair<int64_t, int64_t>{0, 32}, {1, 0}}) {
        QuantizedWeight a = quantize::quantize_weight(w, "w", axis, block, plain);
        QuantizedWeight b = quantize::quantize_weight(w, "w", axis, block, searched);
        double ea = quantize::measure(a, w).rel_rms, eb = quantize::measure(b, w).rel_rms;
        CHECK(eb < 0.99 * ea);
        for (int64_t i = 0; i < w.size(); ++i) {
          int64_t code = b.data.get_int(i);
          CHECK((asymmetric ? code >= 0 && code <= 15 : code >= -8 && code <= 7));
        }
        CHECK(b.scale.dtype() == dtype);
      }
    }
  }
}
