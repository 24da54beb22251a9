// Resize of the two inner dims of x (W, H, planes) from per-column and per-row sample tables
// (runtime/ops/resize.h): w0, w1 (int32), w_weight (the weight of w1), and h0, h1, h_weight. Nearest
// reads x(w0, h0); linear interpolates along W on the two sampled rows, then along H. One definition
// for the CPU pipeline (runtime/data_movement_pipelines.cpp) and the GPU kernel (schedules/gpu/elementwise.h),
// each scheduling it its own way.
#pragma once
#include <string>
#include <vector>

#include "Halide.h"

namespace tetra::dsl {

struct ResizeDef {
  Halide::ImageParam x, w0, w1, w_weight, h0, h1, h_weight;
  Halide::Var ox{"ox"}, oy{"oy"}, p{"p"};
  Halide::Func out{};  // (OW, OH, planes), named by define_resize

  std::vector<Halide::ImageParam> params() const { return {x, w0, w1, w_weight, h0, h1, h_weight}; }
};

ResizeDef define_resize(bool nearest, const std::string& out_name);

}  // namespace tetra::dsl
