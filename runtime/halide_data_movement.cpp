// The Halide backend's kernels for data movement, Where, Resize and reductions.
//
//   views       Reshape, Flatten, Squeeze, Unsqueeze: the output shares the input's bytes, no copy
//   copies      Transpose, Slice, Concat, Split, Pad: each is one or more strided copies (a permutation of
//               strides; a start offset and strides times steps; a copy per input into its window of
//               the output; a copy per output from its window of the input; the input into its window
//               of the constant-filled output), all on one pipeline
//   Where       a select over the three operands with broadcasting as stride 0
//   Gather      rows picked by an index list along any axis
//   Resize      nearest (every nearest_mode and coordinate transform) or linear, of the last two dims,
//               from sample tables computed by the reference's own rule (runtime/ops/resize.h)
//   ReduceSum / ReduceMean / ReduceMax / ReduceMin
//               over any axes: the input seen as up to 3 kept and 3 reduced merged dims
//
// Copies, Where and Gather move elements of any type by size (8 to 64 bits), so float16 and int64
// take the same code as float32; Resize and the reductions compute in float32. Shapes, strides,
// offsets and index tables are run-time values: a model compiles each pipeline once. Adjacent dims
// that every operand steps through alike are merged first, so a rank-8 transpose whose moves are
// rank 6 or less runs too; the rest, empty tensors and 4-bit types run the reference kernel.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "HalideBuffer.h"
#include "runtime/halide_backend.h"
#include "runtime/halide_kernel.h"
#include "runtime/op_registry.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/pad.h"
#include "runtime/ops/reduce.h"
#include "runtime/ops/resize.h"
#include "runtime/ops/tensor_ops.h"

namespace tetra {
namespace {

using HalideBuffer = Halide::Runtime::Buffer<void>;

// Integer and bool tensors up to this size (shape arithmetic: Shape -> Gather -> Concat) stay on the
// reference kernels: they take microseconds there, and a compiled kernel would only add a compile.
constexpr int64_t kTinyIntegerElements = 64;

// A loop nest through operands: per dim (outermost first) its extent, and per operand its stride in
// elements along that dim (0: broadcast).
struct StridedNest {
  Shape extents;
  std::vector<std::vector<int64_t>> strides;  // [operand][dim]
};

// The nest with dims of extent 1 dropped and each dim merged into its inner neighbour where every
// operand steps through the pair as through one dim; innermost first. nullopt when more than
// `max_rank` dims remain.
std::optional<StridedNest> merged(const StridedNest& nest, size_t max_rank) {
  StridedNest m;
  m.strides.resize(nest.strides.size());
  for (size_t d = nest.extents.size(); d-- > 0;) {
    if (nest.extents[d] == 1) continue;
    bool joins = !m.extents.empty();
    for (size_t k = 0; k < nest.strides.size() && joins; ++k)
      joins = nest.strides[k][d] == m.strides[k].back() * m.extents.back();
    if (joins) {
      m.extents.back() *= nest.extents[d];
      continue;
    }
    m.extents.push_back(nest.extents[d]);
    for (size_t k = 0; k < nest.strides.size(); ++k) m.strides[k].push_back(nest.strides[k][d]);
  }
  if (m.extents.size() > max_rank) return std::nullopt;
  return m;
}

// A buffer over `data` with the given extents and element strides (innermost first), padded with
// dims of extent 1 to `rank`.
HalideBuffer strided_buffer(const Node& node, halide_type_t type, const void* data, const Shape& extents,
                            const std::vector<int64_t>& strides, int rank) {
  std::vector<halide_dimension_t> dims(rank, halide_dimension_t(0, 1, 1));
  for (size_t d = 0; d < extents.size(); ++d) {
    check(std::abs(strides[d]) <= INT32_MAX, ErrorKind::Unsupported, [&] {
      return node.label() + ": a stride of " + std::to_string(strides[d]) +
             " elements is too large for a Halide kernel";
    });
    dims[d] = halide_dimension_t(0, to_int(extents[d], node), static_cast<int32_t>(strides[d]));
  }
  return HalideBuffer(type, const_cast<void*>(data), rank, dims.data());
}

// A dense buffer over a tensor's bytes (or over `data`), extents innermost first.
HalideBuffer dense_buffer(const Node& node, halide_type_t type, const void* data, const Shape& extents) {
  std::vector<int64_t> strides;
  int64_t stride = 1;
  for (int64_t e : extents) {
    strides.push_back(stride);
    stride *= e;
  }
  return strided_buffer(node, type, data, extents, strides, static_cast<int>(extents.size()));
}

// Moves elements of `bits` bits: unsigned integers of that size.
halide_type_t moved_type(int bits) { return halide_type_t(halide_type_uint, static_cast<uint8_t>(bits)); }

void call(const Node& node, const KernelCode& code, std::vector<HalideBuffer*> buffers) {
  std::vector<void*> argv;
  for (HalideBuffer* b : buffers) argv.push_back(b->raw_buffer());
  dsl::Status st = dsl::call_pipeline(*code.pipeline, argv.data(), node.op_type);
  check(st.ok(), ErrorKind::Invalid,
        [&] { return node.label() + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
}

int64_t element_bytes(const Tensor& t) { return dtype_bits(t.dtype()) / 8; }

// Strides of `shape` broadcast to `out` (numpy rules, aligned at the innermost dim): 0 where it repeats.
std::vector<int64_t> broadcast_strides(const Shape& shape, const Shape& out) {
  std::vector<int64_t> dense = strides_of(shape), strides(out.size(), 0);
  size_t offset = out.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) strides[offset + d] = shape[d] == 1 ? 0 : dense[d];
  return strides;
}

// ---------------------------------------------------------------------------------------------
// Views

class ViewKernel : public HalideKernel {
 public:
  ViewKernel(const Node& node, KernelSource& source) : HalideKernel(node, source) {
    detail_ = "view: the output shares the input's bytes (no copy)";
  }
  // The op's own shape rule; its result is Tensor::reshaped, which shares the storage.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override { return reference(inputs); }
};

// ---------------------------------------------------------------------------------------------
// Strided copies: Transpose, Slice, Concat, Split

// One strided copy: `extents` (outermost first) elements from src to dst at the given element strides.
struct Copy {
  const uint8_t* src;
  uint8_t* dst;
  Shape extents;
  std::vector<int64_t> src_strides, dst_strides;
};

// The outputs of one run of a node, and the copies that fill them.
struct CopyPlan {
  std::vector<Tensor> outputs;
  std::vector<Copy> copies;
};
using PlanFn = std::function<CopyPlan(const Node& node, const std::vector<Tensor>& inputs, const OutputPlaces& places)>;

CopyPlan plan_transpose(const Node& node, const std::vector<Tensor>& in, const OutputPlaces& places) {
  const Tensor& x = input_required(node, in, 0);
  std::vector<int64_t> perm = transpose_permutation(node, x.rank()), in_strides = strides_of(x.shape());
  Copy c{x.bytes(), nullptr, {}, {}, {}};
  for (int64_t p : perm) {
    c.extents.push_back(x.shape()[p]);
    c.src_strides.push_back(in_strides[p]);
  }
  CopyPlan plan{{places.make(0, x.dtype(), c.extents)}, {}};
  c.dst = plan.outputs[0].mutable_bytes();
  c.dst_strides = strides_of(c.extents);
  plan.copies.push_back(c);
  return plan;
}

// Expand: the input read with stride 0 along its broadcast dims.
CopyPlan plan_expand(const Node& node, const std::vector<Tensor>& in, const OutputPlaces& places) {
  const Tensor& x = input_required(node, in, 0);
  const Shape out = broadcast_shapes(node, x.shape(), expand_dims(node, input_required(node, in, 1)));
  CopyPlan plan{{places.make(0, x.dtype(), out)}, {}};
  plan.copies.push_back(
      {x.bytes(), plan.outputs[0].mutable_bytes(), out, broadcast_strides(x.shape(), out), strides_of(out)});
  return plan;
}

CopyPlan plan_slice(const Node& node, const std::vector<Tensor>& in, const OutputPlaces& places) {
  const Tensor& x = input_required(node, in, 0);
  std::vector<SliceRange> ranges = slice_ranges(node, in);
  std::vector<int64_t> in_strides = strides_of(x.shape());
  Copy c{x.bytes(), nullptr, {}, {}, {}};
  int64_t start = 0;
  for (size_t d = 0; d < ranges.size(); ++d) {
    c.extents.push_back(ranges[d].count);
    c.src_strides.push_back(in_strides[d] * ranges[d].step);
    start += ranges[d].start * in_strides[d];
  }
  CopyPlan plan{{places.make(0, x.dtype(), c.extents)}, {}};
  if (plan.outputs[0].size() == 0) return plan;
  c.src += start * element_bytes(x);
  c.dst = plan.outputs[0].mutable_bytes();
  c.dst_strides = strides_of(c.extents);
  plan.copies.push_back(c);
  return plan;
}

CopyPlan plan_concat(const Node& node, const std::vector<Tensor>& in, const OutputPlaces& places) {
  int64_t axis;
  CopyPlan plan{{places.make(0, in.at(0).dtype(), concat_output_shape(node, in, &axis))}, {}};
  Tensor& out = plan.outputs[0];
  std::vector<int64_t> out_strides = strides_of(out.shape());
  int64_t offset = 0;
  for (const Tensor& t : in) {
    uint8_t* dst = out.mutable_bytes() + offset * out_strides[axis] * element_bytes(out);
    // An input the memory plan placed in its slice of the output is there already.
    if (t.size() > 0 && t.bytes() != dst)
      plan.copies.push_back(Copy{t.bytes(), dst, t.shape(), strides_of(t.shape()), out_strides});
    offset += t.shape()[axis];
  }
  return plan;
}

CopyPlan plan_split(const Node& node, const std::vector<Tensor>& in, const OutputPlaces& places) {
  const Tensor& x = input_required(node, in, 0);
  int64_t axis;
  std::vector<int64_t> sizes = split_output_sizes(node, in, &axis), in_strides = strides_of(x.shape());
  CopyPlan plan;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    Shape shape = x.shape();
    shape[axis] = size;
    plan.outputs.push_back(places.make(plan.outputs.size(), x.dtype(), shape));
    Tensor& out = plan.outputs.back();
    if (out.size() > 0)
      plan.copies.push_back(Copy{x.bytes() + offset * in_strides[axis] * element_bytes(x), out.mutable_bytes(), shape,
                                 in_strides, strides_of(shape)});
    offset += size;
  }
  return plan;
}

// Pad, constant mode: the output filled with the value, then one copy of the input (less any cropped
// edges) into its window.
CopyPlan plan_pad(const Node& node, const std::vector<Tensor>& in, const OutputPlaces& places) {
  const Tensor& x = input_required(node, in, 0);
  auto given = [&](size_t i) { return i < in.size() && !in[i].empty() ? &in[i] : nullptr; };
  std::optional<PadArgs> a = pad_args(node, x.rank(), given(1), given(2), given(3));
  op_check(a && a->mode == "constant", node, "the Halide kernel pads with a constant only");
  Shape out_shape = x.shape(), extents = x.shape();
  std::vector<int64_t> in_strides = strides_of(x.shape());
  int64_t src_offset = 0;
  for (int64_t d = 0; d < x.rank(); ++d) {
    out_shape[d] += a->begin[d] + a->end[d];
    op_check(out_shape[d] >= 0, node, "pads crop dim " + std::to_string(d) + " below zero");
    extents[d] -= std::max<int64_t>(0, -a->begin[d]) + std::max<int64_t>(0, -a->end[d]);
    src_offset += std::max<int64_t>(0, -a->begin[d]) * in_strides[d];
  }
  // The output filled with the value, then a copy overwrites the window.
  CopyPlan plan{{places.make(0, x.dtype(), out_shape)}, {}};
  Tensor& out = plan.outputs[0];
  if (a->value == 0) {
    std::fill_n(out.mutable_bytes(), out.byte_size(), uint8_t(0));
  } else {
    if (out.dtype() == DType::Float32) std::fill(out.mutable_data<float>(), out.mutable_data<float>() + out.size(), float(a->value));
    else
      for (int64_t i = 0; i < out.size(); ++i) {
        if (is_float(out.dtype())) out.set(i, a->value);
        else out.set_int(i, static_cast<int64_t>(a->value));
      }
  }
  if (std::any_of(extents.begin(), extents.end(), [](int64_t e) { return e <= 0; })) return plan;
  std::vector<int64_t> out_strides = strides_of(out_shape);
  int64_t dst_offset = 0;
  for (int64_t d = 0; d < x.rank(); ++d) dst_offset += std::max<int64_t>(0, a->begin[d]) * out_strides[d];
  plan.copies.push_back(Copy{x.bytes() + src_offset * element_bytes(x), out.mutable_bytes() + dst_offset * element_bytes(out),
                             extents, in_strides, out_strides});
  return plan;
}

class CopyKernel : public HalideKernel {
 public:
  CopyKernel(const Node& node, KernelSource& source, int bits, PlanFn plan)
      : HalideKernel(node, source), plan_(std::move(plan)) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Copy;
    request.element_bits = bits;
    code_ = code_for(request);
    detail_ = node.op_type + " as strided copies of " + std::to_string(bits) +
              "-bit elements (run-time extents and strides, up to " + std::to_string(kStridedRank) +
              " merged dims), vectors along the innermost dim, parallel";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    CopyPlan plan = plan_(node_, inputs, places_);
    if (plan.outputs.empty()) return {};
    halide_type_t type = moved_type(dtype_bits(plan.outputs[0].dtype()));
    for (const Copy& c : plan.copies) {
      auto nest = merged(StridedNest{c.extents, {c.src_strides, c.dst_strides}}, kStridedRank);
      if (!nest) return reference(inputs);
      HalideBuffer src = strided_buffer(node_, type, c.src, nest->extents, nest->strides[0], kStridedRank);
      HalideBuffer dst = strided_buffer(node_, type, c.dst, nest->extents, nest->strides[1], kStridedRank);
      call(node_, code_, {&src, &dst});
    }
    return plan.outputs;
  }

 private:
  PlanFn plan_;
  KernelCode code_;
};

// ---------------------------------------------------------------------------------------------
// Where

class WhereKernel : public HalideKernel {
 public:
  WhereKernel(const Node& node, KernelSource& source, int bits) : HalideKernel(node, source) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Where;
    request.element_bits = bits;
    code_ = code_for(request);
    detail_ = "select of " + std::to_string(bits) + "-bit elements over broadcast operands (stride 0), up to " +
              std::to_string(kStridedRank) + " merged dims, vectors along the innermost dim, parallel";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& in) override {
    if (in.size() < 3 || in[0].dtype() != DType::Bool || in[1].dtype() != in[2].dtype() ||
        dtype_bits(in[1].dtype()) < 8)
      return reference(in);  // it reports the bad types
    Shape out_shape = broadcast_shapes(node_, broadcast_shapes(node_, in[0].shape(), in[1].shape()), in[2].shape());
    Tensor out = places_.make(0, in[1].dtype(), out_shape);
    if (out.size() == 0) return {out};
    StridedNest nest{out_shape, {}};
    for (size_t k = 0; k < 3; ++k) nest.strides.push_back(broadcast_strides(in[k].shape(), out_shape));
    nest.strides.push_back(strides_of(out_shape));
    auto m = merged(nest, kStridedRank);
    if (!m) return reference(in);
    halide_type_t type = moved_type(dtype_bits(out.dtype()));
    HalideBuffer cond = strided_buffer(node_, moved_type(8), in[0].bytes(), m->extents, m->strides[0], kStridedRank);
    HalideBuffer x = strided_buffer(node_, type, in[1].bytes(), m->extents, m->strides[1], kStridedRank);
    HalideBuffer y = strided_buffer(node_, type, in[2].bytes(), m->extents, m->strides[2], kStridedRank);
    HalideBuffer dst = strided_buffer(node_, type, out.mutable_bytes(), m->extents, m->strides[3], kStridedRank);
    call(node_, code_, {&cond, &x, &y, &dst});
    return {out};
  }

 private:
  KernelCode code_;
};

// ---------------------------------------------------------------------------------------------
// Gather

class GatherKernel : public HalideKernel {
 public:
  GatherKernel(const Node& node, KernelSource& source, int bits) : HalideKernel(node, source) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Gather;
    request.element_bits = bits;
    code_ = code_for(request);
    detail_ = "gather of " + std::to_string(bits) + "-bit rows by a run-time index list, vectors along each row";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& in) override {
    const Tensor &x = input_required(node_, in, 0), &indices = input_required(node_, in, 1);
    if (x.rank() < 1 || (indices.dtype() != DType::Int32 && indices.dtype() != DType::Int64))
      return reference(in);  // it reports the bad input
    const Shape& s = x.shape();
    int64_t axis = normalize_axis(node_, node_.attr_int("axis", 0), x.rank());
    int64_t outer = 1, dim = s[axis], inner = 1;
    for (int64_t d = 0; d < x.rank(); ++d) (d < axis ? outer : inner) *= d == axis ? 1 : s[d];
    // Indices normalised into [0, dim); one out of range: the reference kernel reports it.
    std::vector<int32_t> idx(indices.size());
    for (int64_t j = 0; j < indices.size(); ++j) {
      int64_t i = indices.get_int(j);
      if (i < -dim || i >= dim) return reference(in);
      idx[j] = static_cast<int32_t>(i < 0 ? i + dim : i);
    }
    Shape out_shape(s.begin(), s.begin() + axis);
    out_shape.insert(out_shape.end(), indices.shape().begin(), indices.shape().end());
    out_shape.insert(out_shape.end(), s.begin() + axis + 1, s.end());
    Tensor out = places_.make(0, x.dtype(), out_shape);
    if (out.size() == 0) return {out};
    halide_type_t type = moved_type(dtype_bits(x.dtype()));
    HalideBuffer data = dense_buffer(node_, type, x.bytes(), {inner, dim, outer});
    HalideBuffer index = dense_buffer(node_, halide_type_of<int32_t>(), idx.data(), {int64_t(idx.size())});
    HalideBuffer dst = dense_buffer(node_, type, out.mutable_bytes(), {inner, int64_t(idx.size()), outer});
    call(node_, code_, {&data, &index, &dst});
    return {out};
  }

 private:
  KernelCode code_;
};

// ---------------------------------------------------------------------------------------------
// Resize

class ResizeKernel : public HalideKernel {
 public:
  ResizeKernel(const Node& node, KernelSource& source, bool nearest) : HalideKernel(node, source) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Resize;
    request.op = nearest ? "nearest" : "linear";
    code_ = code_for(request);
    detail_ = "resize " + request.op + " of H and W from per-row and per-column sample tables, " +
              std::to_string(lanes()) + "-wide vectors along W, parallel";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& in) override {
    const Tensor& x = input_required(node_, in, 0);
    ResizePlan plan = resize_plan(node_, in);
    Tensor y = places_.make(0, DType::Float32, plan.out_shape);
    if (x.size() == 0 || y.size() == 0) return reference(in);
    std::vector<float> x_copy;
    const float* xd = float_data(x, x_copy);
    if (std::optional<std::pair<int, int>> f = whole_factors(plan, x.shape())) {
      const Shape& s = x.shape();
      HalideBuffer xb = dense_buffer(node_, halide_type_of<float>(), xd, {s[3], s[2], s[0] * s[1]});
      HalideBuffer yb = dense_buffer(node_, halide_type_of<float>(), y.mutable_data<float>(),
                                     {plan.out_shape[3], plan.out_shape[2], s[0] * s[1]});
      call(node_, code_by_factors(*f), {&xb, &yb});
      return {as_dtype(y, x.dtype())};
    }
    Tables w = tables(plan.w), h = tables(plan.h);
    const Shape& s = x.shape();
    HalideBuffer xb = dense_buffer(node_, halide_type_of<float>(), xd, {s[3], s[2], s[0] * s[1]});
    std::vector<HalideBuffer> t;
    for (Tables* axis : {&w, &h}) {
      int64_t n = int64_t(axis->i0.size());
      t.push_back(dense_buffer(node_, halide_type_of<int32_t>(), axis->i0.data(), {n}));
      t.push_back(dense_buffer(node_, halide_type_of<int32_t>(), axis->i1.data(), {n}));
      t.push_back(dense_buffer(node_, halide_type_of<float>(), axis->weight.data(), {n}));
    }
    HalideBuffer yb = dense_buffer(node_, halide_type_of<float>(), y.mutable_data<float>(),
                                   {plan.out_shape[3], plan.out_shape[2], s[0] * s[1]});
    call(node_, code_, {&xb, &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &yb});
    return {as_dtype(y, x.dtype())};
  }

 private:
  struct Tables {
    std::vector<int32_t> i0, i1;
    std::vector<float> weight;
  };
  // (sw, sh) when every sample is nearest at out / factor along W and H, for whole factors up to 8 that
  // multiply the input's W and H into the output's (the coordinate transform and rounding then agree
  // on those samples, whatever they are); nullopt otherwise.
  static std::optional<std::pair<int, int>> whole_factors(const ResizePlan& plan, const Shape& x) {
    auto factor = [](const std::vector<ResizeSample>& samples, int64_t in) -> int {
      if (in <= 0 || samples.size() % size_t(in) != 0) return 0;
      const int64_t f = int64_t(samples.size()) / in;
      if (f < 1 || f > 8) return 0;
      for (size_t i = 0; i < samples.size(); ++i)
        if (samples[i].i0 != int64_t(i) / f) return 0;
      return int(f);
    };
    if (!plan.nearest || x.size() != 4) return std::nullopt;
    int sw = factor(plan.w, x[3]), sh = factor(plan.h, x[2]);
    if (sw == 0 || sh == 0) return std::nullopt;
    return std::make_pair(sw, sh);
  }

  const KernelCode& code_by_factors(std::pair<int, int> f) {
    auto it = by_factors_.find(f);
    if (it != by_factors_.end()) return it->second;
    KernelRequest request;
    request.kind = KernelRequest::Kind::Resize;
    request.op = "nearest by " + std::to_string(f.first) + "x" + std::to_string(f.second);
    detail_ += "; nearest by whole factors " + std::to_string(f.first) + "x" + std::to_string(f.second) +
               ": each input vector stored once per factor, no sample tables";
    return by_factors_.emplace(f, code_for(request)).first->second;
  }

  static Tables tables(const std::vector<ResizeSample>& samples) {
    Tables t;
    for (const ResizeSample& s : samples) {
      t.i0.push_back(static_cast<int32_t>(s.i0));
      t.i1.push_back(static_cast<int32_t>(s.i1));
      t.weight.push_back(static_cast<float>(s.w1));
    }
    return t;
  }

  KernelCode code_;
  std::map<std::pair<int, int>, KernelCode> by_factors_;  // nearest by whole factors (sw, sh)
};

// ---------------------------------------------------------------------------------------------
// ReduceSum, ReduceMean, ReduceMax, ReduceMin

class ReduceKernel : public HalideKernel {
 public:
  // `op`: "sum", "mean", "max" or "min".
  ReduceKernel(const Node& node, KernelSource& source, const std::string& op) : HalideKernel(node, source) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Reduce;
    request.op = op;
    code_ = code_for(request);
    detail_ = "reduce " + request.op + " over up to 3 merged dims (axes and shapes at run time), in float32, " +
              std::to_string(lanes()) + " outputs per vector, parallel";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& in) override {
    const Tensor& x = input_required(node_, in, 0);
    ReduceAxes axes = reduce_axes(node_, in, x.rank());
    if (x.size() == 0 || !is_fp(x.dtype())) return reference(in);
    // The kept and the reduced dims, each merged where adjacent (the input is dense), innermost first.
    Shape kept, reduced, out_shape;
    std::vector<int64_t> kept_strides, reduced_strides, strides = strides_of(x.shape());
    int last = -1;  // the status of the previous (inner) non-unit dim: 0 kept, 1 reduced
    for (int64_t d = x.rank(); d-- > 0;) {
      int64_t extent = x.shape()[d];
      bool r = axes.reduced[d];
      if (extent == 1) continue;
      Shape& e = r ? reduced : kept;
      std::vector<int64_t>& st = r ? reduced_strides : kept_strides;
      if (last == int(r)) {
        e.back() *= extent;
      } else {
        e.push_back(extent);
        st.push_back(strides[d]);
      }
      last = int(r);
    }
    for (int64_t d = 0; d < x.rank(); ++d)
      if (!axes.reduced[d] || axes.keepdims) out_shape.push_back(axes.reduced[d] ? 1 : x.shape()[d]);
    if (kept.size() > 3 || reduced.size() > 3) return reference(in);
    Tensor y = places_.make(0, DType::Float32, out_shape);
    std::vector<float> x_copy;
    const float* xd = float_data(x, x_copy);
    Shape extents = kept;
    std::vector<int64_t> view_strides = kept_strides;
    extents.resize(3, 1);
    view_strides.resize(3, 1);
    for (size_t k = 0; k < 3; ++k) {
      extents.push_back(k < reduced.size() ? reduced[k] : 1);
      view_strides.push_back(k < reduced.size() ? reduced_strides[k] : 1);
    }
    HalideBuffer xb = strided_buffer(node_, halide_type_of<float>(), xd, extents, view_strides, kStridedRank);
    Shape out_extents(extents.begin(), extents.begin() + 3);
    HalideBuffer yb = dense_buffer(node_, halide_type_of<float>(), y.mutable_data<float>(), out_extents);
    call(node_, code_, {&xb, &yb});
    return {as_dtype(y, x.dtype())};
  }

 private:
  KernelCode code_;
};

// Whether the node moves integer or bool data small enough to leave to the reference kernel.
bool tiny_integer(const Node& node, const Graph& graph, DType t) {
  if (is_float(t)) return false;
  for (const std::string& out : node.outputs) {
    if (out.empty()) continue;
    std::optional<Shape> s = static_shape(graph, out);
    if (!s || num_elements(*s) > kTinyIntegerElements) return false;
  }
  return true;
}

}  // namespace

bool is_data_movement(const std::string& op) {
  static const std::set<std::string> ops = {
      "Reshape", "Flatten", "Squeeze",  "Unsqueeze",       "Transpose", "Slice",      "Concat",    "Split",
      "Gather",  "Where",   "Expand",   "Resize",          "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
      "Pad",     "Shape",   "Constant", "ConstantOfShape", "Cast",      "CastLike"};
  return ops.count(op) > 0 || is_predicate(op);
}

bool is_predicate(const std::string& op) {
  static const std::set<std::string> ops = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
                                            "Not",   "And",  "Or",          "Xor"};
  return ops.count(op) > 0;
}

std::unique_ptr<NodeKernel> make_halide_data_movement_kernel(const Node& node, const Graph& graph,
                                                             KernelSource& source, std::string* why_not) {
  const std::string& op = node.op_type;
  if (op_for(node).output_views_input) return std::make_unique<ViewKernel>(node, source);
  if (op == "Shape" || op == "Constant" || op == "ConstantOfShape")
    return decline(why_not, op + " makes a small int64 tensor from the graph (folded at load when its input is known)");
  if (op == "Cast" || op == "CastLike" || is_predicate(op))
    return decline(why_not, op + " runs on the reference kernel (shape arithmetic and masks, folded at load when "
                                 "their inputs are constants)");

  // Where moves its x / y operands; the others their input 0.
  DType t = dtype_of(graph, node.input(op == "Where" ? 1 : 0));
  if (t == DType::Undefined) return decline(why_not, "the input's type is unknown");
  if (tiny_integer(node, graph, t))
    return decline(why_not, dtype_name(t) + " shape arithmetic on at most " + std::to_string(kTinyIntegerElements) +
                                " elements runs on the reference kernel (a compile would cost more than it saves)");
  if (op == "Resize" || op.rfind("Reduce", 0) == 0) {
    if (!is_fp(t)) return decline(why_not, "input is " + dtype_name(t) + ", not float32/float16");
    try {
      if (op == "Resize") {
        std::string mode = node.attr_string("mode", "nearest");
        if (mode != "nearest" && mode != "linear") return decline(why_not, "mode '" + mode + "' has no Halide kernel");
        return std::make_unique<ResizeKernel>(node, source, mode == "nearest");
      }
      std::string how = op.substr(6);  // "Sum", "Mean", "Max", "Min"
      for (char& ch : how) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      return std::make_unique<ReduceKernel>(node, source, how);
    } catch (const Error& e) {
      *why_not = std::string("not compiled: ") + e.what();
      return nullptr;
    }
  }
  int bits = dtype_bits(t);
  if (bits % 8 != 0) return decline(why_not, "packed " + dtype_name(t) + " tensors run on the reference kernel");
  if (op == "Transpose") return std::make_unique<CopyKernel>(node, source, bits, plan_transpose);
  if (op == "Slice") return std::make_unique<CopyKernel>(node, source, bits, plan_slice);
  if (op == "Expand") return std::make_unique<CopyKernel>(node, source, bits, plan_expand);
  if (op == "Concat") return std::make_unique<CopyKernel>(node, source, bits, plan_concat);
  if (op == "Split") return std::make_unique<CopyKernel>(node, source, bits, plan_split);
  if (op == "Pad") {
    if (node.attr_string("mode", "constant") != "constant")
      return decline(why_not, "Pad mode '" + node.attr_string("mode", "constant") + "' runs on the reference kernel");
    return std::make_unique<CopyKernel>(node, source, bits, plan_pad);
  }
  if (op == "Gather") return std::make_unique<GatherKernel>(node, source, bits);
  if (op == "Where") return std::make_unique<WhereKernel>(node, source, bits);
  return decline(why_not, "no Halide kernel for " + op);
}

}  // namespace tetra
