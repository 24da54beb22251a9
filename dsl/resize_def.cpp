#include "dsl/resize_def.h"

namespace tetra::dsl {

using Halide::Expr;
using Halide::ImageParam;

ResizeDef define_resize(bool nearest, const std::string& out_name) {
  ResizeDef r{ImageParam(Halide::Float(32), 3, "x"),       ImageParam(Halide::Int(32), 1, "w0"),
              ImageParam(Halide::Int(32), 1, "w1"),        ImageParam(Halide::Float(32), 1, "w_weight"),
              ImageParam(Halide::Int(32), 1, "h0"),        ImageParam(Halide::Int(32), 1, "h1"),
              ImageParam(Halide::Float(32), 1, "h_weight")};
  r.out = Halide::Func(out_name);
  const ImageParam& x = r.x;
  auto col = [&](const ImageParam& t, const Expr& at) { return clamp(t(at), 0, x.dim(0).extent() - 1); };
  auto row = [&](const ImageParam& t, const Expr& at) { return clamp(t(at), 0, x.dim(1).extent() - 1); };
  if (nearest) {
    r.out(r.ox, r.oy, r.p) = x(col(r.w0, r.ox), row(r.h0, r.oy), r.p);
  } else {
    auto along_w = [&](const Expr& iy) {
      return (1.0f - r.w_weight(r.ox)) * x(col(r.w0, r.ox), iy, r.p) + r.w_weight(r.ox) * x(col(r.w1, r.ox), iy, r.p);
    };
    r.out(r.ox, r.oy, r.p) =
        (1.0f - r.h_weight(r.oy)) * along_w(row(r.h0, r.oy)) + r.h_weight(r.oy) * along_w(row(r.h1, r.oy));
  }
  return r;
}

}  // namespace tetra::dsl
