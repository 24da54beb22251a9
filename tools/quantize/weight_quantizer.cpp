#include "tools/quantize/weight_quantizer.h"

#include <algorithm>
#include <cmath>

#include "importer/error.h"

namespace tetra::quantize {
namespace {

// 1.0 down to 0.5 in steps of 0.025: below half the range the error only grows on real weights.
constexpr int kClipSteps = 21;
double clip_ratio(int step) { return 1.0 - 0.025 * step; }

// One block's grid: value = (code - zero) * scale, codes in [qmin, qmax].
struct Grid {
  double scale = 1, zero = 0;
};

class BlockQuantizer {
 public:
  BlockQuantizer(DType scale_dtype, bool asymmetric)
      : stored_(scale_dtype, {1}), asymmetric_(asymmetric), qmin_(asymmetric ? 0 : -8), qmax_(asymmetric ? 15 : 7) {}

  double code(double v, const Grid& g) const { return std::clamp(std::nearbyint(v / g.scale) + g.zero, qmin_, qmax_); }

  // The grid for the range [lo, hi] (lo <= 0 <= hi) clipped by `ratio`. Symmetric grids put the
  // larger end at code 7, or with `low_at_minus_8` the low end at code -8 (one more level when the
  // block's extreme is negative). Scales are rounded to the stored type first (fp16 models), so the
  // codes match what DequantizeLinear will compute.
  Grid grid(double lo, double hi, double ratio, bool low_at_minus_8 = false) {
    lo *= ratio;
    hi *= ratio;
    stored_.set(0, asymmetric_ ? (hi - lo) / 15.0 : low_at_minus_8 ? -lo / 8.0 : std::max(-lo, hi) / 7.0);
    Grid g;
    g.scale = stored_.get(0);
    if (!(g.scale > 0) || !std::isfinite(g.scale)) g.scale = 1.0;  // an all-zero block, or below fp16's range
    if (asymmetric_) g.zero = std::clamp(std::nearbyint(-lo / g.scale), 0.0, 15.0);
    return g;
  }

  double error(const std::vector<double>& values, const Grid& g) const {
    double e = 0;
    for (double v : values) {
      double d = (code(v, g) - g.zero) * g.scale - v;
      e += d * d;
    }
    return e;
  }

  Grid best(const std::vector<double>& values, bool search) {
    double lo = 0, hi = 0;
    for (double v : values) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    Grid chosen = grid(lo, hi, 1.0);
    if (!search) return chosen;
    double best_error = error(values, chosen);
    const bool low_end_too = !asymmetric_ && -lo > hi;
    for (int step = 0; step < kClipSteps; ++step) {
      for (bool low_at_minus_8 : {false, true}) {
        if ((step == 0 && !low_at_minus_8) || (low_at_minus_8 && !low_end_too)) continue;
        Grid g = grid(lo, hi, clip_ratio(step), low_at_minus_8);
        double e = error(values, g);
        if (e < best_error) {
          best_error = e;
          chosen = g;
        }
      }
    }
    return chosen;
  }

 private:
  Tensor stored_;
  bool asymmetric_;
  double qmin_, qmax_;
};

}  // namespace

QuantizedWeight quantize_weight(const Tensor& w, const std::string& name, int64_t axis, int64_t block,
                                const WeightQuantOptions& options) {
  QuantizedWeight q;
  q.name = name;
  q.pattern = "DequantizeLinear";
  q.axis = axis;
  q.block_size = block;
  Shape param_shape = w.shape();
  if (block > 0) param_shape[axis] = (param_shape[axis] + block - 1) / block;
  else param_shape = {w.shape()[axis]};
  q.data = Tensor(options.asymmetric ? DType::UInt4 : DType::Int4, w.shape());
  q.scale = Tensor(w.dtype(), param_shape);
  if (options.asymmetric) q.zero_point = Tensor(DType::UInt4, param_shape);

  std::vector<std::vector<double>> blocks(q.scale.size());
  for (int64_t i = 0; i < w.size(); ++i) {
    double v = w.get(i);
    check(std::isfinite(v), ErrorKind::Invalid, "weight '" + name + "' holds a non-finite value at element " + std::to_string(i));
    blocks[q.param_index(i)].push_back(v);
  }
  BlockQuantizer quantizer(w.dtype(), options.asymmetric);
  std::vector<Grid> grids(blocks.size());
  for (size_t p = 0; p < blocks.size(); ++p) {
    grids[p] = quantizer.best(blocks[p], options.search_clip);
    q.scale.set(p, grids[p].scale);
    if (options.asymmetric) q.zero_point.set_int(p, static_cast<int64_t>(grids[p].zero));
  }
  for (int64_t i = 0; i < w.size(); ++i)
    q.data.set_int(i, static_cast<int64_t>(quantizer.code(w.get(i), grids[q.param_index(i)])));
  return q;
}

ErrorStats measure(const QuantizedWeight& q, const Tensor& w) {
  ErrorStats s;
  double err2 = 0, ref2 = 0;
  for (int64_t i = 0; i < w.size(); ++i) {
    double d = static_cast<double>(q.value(i)) - w.get(i);
    s.max_abs = std::max(s.max_abs, std::fabs(d));
    err2 += d * d;
    ref2 += w.get(i) * w.get(i);
  }
  s.rel_rms = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  return s;
}

Tensor transpose_2d(const Tensor& t) {
  int64_t rows = t.shape()[0], cols = t.shape()[1];
  Tensor out(t.dtype(), {cols, rows});
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out.set(c * rows + r, t.get(r * cols + c));
  return out;
}

NBitsWeight to_matmul_nbits(const QuantizedWeight& q) {
  const int64_t N = q.shape()[0], K = q.shape()[1], bs = q.block_size, blocks = q.scale.shape()[1];
  const int64_t row_bytes = blocks * bs / 2, zp_row = (blocks + 1) / 2;
  const bool has_zp = !q.zero_point.empty();
  NBitsWeight out;
  out.b = Tensor(DType::UInt8, {N, blocks, bs / 2});
  for (int64_t r = 0; r < N; ++r) {
    int64_t pad_code = has_zp ? q.zero_point.get_int(r * blocks + blocks - 1) : 8;
    for (int64_t k = 0; k < blocks * bs; ++k) {
      int64_t code = k >= K ? pad_code : q.data.get_int(r * K + k) + (has_zp ? 0 : 8);
      pack_nibble(out.b.mutable_bytes() + r * row_bytes, k, static_cast<int>(code));
    }
  }
  out.scales = q.scale.reshaped({N * blocks});
  if (has_zp) {
    out.zero_points = Tensor(DType::UInt8, {N * zp_row});
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < blocks; ++j)
        pack_nibble(out.zero_points.mutable_bytes() + r * zp_row, j, static_cast<int>(q.zero_point.get_int(r * blocks + j)));
  }
  return out;
}

}  // namespace tetra::quantize
