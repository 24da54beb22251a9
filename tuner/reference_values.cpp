#include "tuner/reference_values.h"

#include <algorithm>
#include <cmath>

namespace tetra::tuner {

bool ReferenceValue::accepts(double got) const { return std::fabs(got - value) <= tolerance(); }

ReferenceValue qmatmul_reference(const dsl::QMatMulWorkload& wl, const QuantizedWeight& w, const float* a,
                                 const float* bias, const dsl::Int8ActivationReference* int8, int64_t m, int64_t n) {
  ReferenceValue r;
  if (int8) {
    r.value = int8->value(w, /*trans_b=*/false, m, n, &r.magnitude);
  } else {
    for (int64_t k = 0; k < wl.K; ++k) {
      double term = double(a[m * wl.K + k]) * w.value(k * wl.N + n);
      r.value += term;
      r.magnitude += std::fabs(term);
    }
  }
  if (wl.has_bias) {
    r.value += bias[n];
    r.magnitude += std::fabs(bias[n]);
  }
  if (wl.epilogue.is_lone_relu()) r.value = std::max(r.value, 0.0);
  if (wl.f16_activations && wl.format.f16_scale) r.relative = 1e-3;
  return r;
}

ReferenceValue qconv_reference(const dsl::QConvWorkload& wl, const QuantizedWeight& w, const float* x,
                               const float* bias, int64_t n, int64_t m, int64_t oh, int64_t ow) {
  ReferenceValue r;
  if (wl.has_bias) {
    r.value = bias[m];
    r.magnitude = std::fabs(r.value);
  }
  const int64_t Cg = wl.Cg(), Mg = wl.Mg();
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t i = 0; i < wl.KH; ++i)
      for (int64_t j = 0; j < wl.KW; ++j) {
        int64_t ih = oh * wl.SH - wl.pad_top + i * wl.DH, iw = ow * wl.SW - wl.pad_left + j * wl.DW;
        if (ih < 0 || ih >= wl.H || iw < 0 || iw >= wl.W) continue;
        int64_t channel = (m / Mg) * Cg + c;
        double term =
            double(x[((n * wl.C + channel) * wl.H + ih) * wl.W + iw]) * w.value(((m * Cg + c) * wl.KH + i) * wl.KW + j);
        r.value += term;
        r.magnitude += std::fabs(term);
      }
  return r;
}

std::vector<int64_t> checked_outputs(int64_t count, int64_t every_up_to, int samples, std::mt19937& rng) {
  std::vector<int64_t> picks;
  if (count <= every_up_to) {
    for (int64_t i = 0; i < count; ++i) picks.push_back(i);
    return picks;
  }
  std::uniform_int_distribution<int64_t> any(0, count - 1);
  for (int i = 0; i < samples; ++i) picks.push_back(any(rng));
  return picks;
}

}  // namespace tetra::tuner
