// Activation x activation MatMul (attention's Q·Kᵀ and P·V: both operands computed at run time) on the
// batched Halide kernel (schedules/cpu/batch_matmul.h). ONNX's numpy-style batch broadcasting becomes
// strides: a batch dimension of 1 against a larger one has stride 0. The innermost batch dimension is
// the kernel's; any outer ones are looped over here. float16 operands are widened to float32 for the
// kernel and the result rounded once.
#include <algorithm>

#include "HalideBuffer.h"
#include "importer/error.h"
#include "runtime/halide_backend.h"
#include "runtime/ops/attention_layout.h"

namespace tetra {
namespace {

class HalideBatchMatMul : public NodeKernel {
 public:
  HalideBatchMatMul(const Node& node, KernelSource& source) : node_(node), source_(source) {}

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& a = inputs.at(0);
    const Tensor& b = inputs.at(1);
    Shape as = a.shape(), bs = b.shape();
    check(!as.empty() && !bs.empty(), ErrorKind::Invalid, [&] { return node_.label() + ": MatMul of a scalar"; });
    // 1-D operands: A [K] is [1, K] and B [K] is [K, 1]; their dimension is dropped from the result.
    bool a_vector = as.size() == 1, b_vector = bs.size() == 1;
    if (a_vector) as.insert(as.begin(), 1);
    if (b_vector) bs.push_back(1);
    int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
    check(bs[bs.size() - 2] == K, ErrorKind::Invalid, [&] {
      return node_.label() + ": inner dimensions differ: " + shape_str(a.shape()) + " x " + shape_str(b.shape());
    });

    // The broadcast batch shape, and each operand's stride (in elements) along it: 0 where it broadcasts.
    Shape a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
    size_t rank = std::max(a_batch.size(), b_batch.size());
    Shape batch(rank, 1);
    std::vector<int64_t> a_stride(rank, 0), b_stride(rank, 0);
    int64_t a_step = M * K, b_step = K * N;
    for (size_t i = 0; i < rank; ++i) {  // from the innermost batch dimension out
      size_t d = rank - 1 - i;
      int64_t ad = i < a_batch.size() ? a_batch[a_batch.size() - 1 - i] : 1;
      int64_t bd = i < b_batch.size() ? b_batch[b_batch.size() - 1 - i] : 1;
      check(ad == bd || ad == 1 || bd == 1, ErrorKind::Invalid, [&] {
        return node_.label() + ": batch dimensions do not broadcast: " + shape_str(a.shape()) + " x " +
               shape_str(b.shape());
      });
      batch[d] = std::max(ad, bd);
      a_stride[d] = ad == 1 ? 0 : a_step;
      b_stride[d] = bd == 1 ? 0 : b_step;
      a_step *= ad;
      b_step *= bd;
    }
    int64_t inner = rank ? batch.back() : 1;
    int64_t a_inner = rank ? a_stride.back() : 0, b_inner = rank ? b_stride.back() : 0;
    size_t outer_rank = rank ? rank - 1 : 0;  // batch dimensions looped over here
    int64_t outer = 1;
    for (size_t d = 0; d < outer_rank; ++d) outer *= batch[d];

    const KernelCode& code = this->code();
    std::vector<float> a_copy, b_copy;
    const float* ad = float_data(a, a_copy);
    const float* bd = float_data(b, b_copy);
    Tensor y = places_.make(0, DType::Float32, [&] {
      Shape s = batch;
      if (!a_vector) s.push_back(M);
      if (!b_vector) s.push_back(N);
      return s;
    }());
    float* yd = y.mutable_data<float>();
    for (int64_t o = 0; o < outer; ++o) {
      // Offsets of this outer batch index in A, B and Y.
      int64_t a_off = 0, b_off = 0, rest = o;
      for (size_t d = outer_rank; d-- > 0;) {
        int64_t i = rest % batch[d];
        rest /= batch[d];
        a_off += i * a_stride[d];
        b_off += i * b_stride[d];
      }
      halide_dimension_t a_dims[3] = {{0, int32_t(K), 1, 0}, {0, int32_t(M), int32_t(K), 0}, {0, int32_t(inner), int32_t(a_inner), 0}};
      halide_dimension_t b_dims[3] = {{0, int32_t(N), 1, 0}, {0, int32_t(K), int32_t(N), 0}, {0, int32_t(inner), int32_t(b_inner), 0}};
      halide_dimension_t y_dims[3] = {{0, int32_t(N), 1, 0}, {0, int32_t(M), int32_t(N), 0}, {0, int32_t(inner), int32_t(M * N), 0}};
      Halide::Runtime::Buffer<float> A(const_cast<float*>(ad + a_off), 3, a_dims);
      Halide::Runtime::Buffer<float> B(const_cast<float*>(bd + b_off), 3, b_dims);
      Halide::Runtime::Buffer<float> Y(yd + o * inner * M * N, 3, y_dims);
      void* argv[] = {A.raw_buffer(), B.raw_buffer(), Y.raw_buffer()};
      dsl::Status st = dsl::call_pipeline(*code.pipeline, argv, "batch matmul");
      check(st.ok(), ErrorKind::Invalid,
            [&] { return node_.label() + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
    }
    if (a.dtype() == DType::Float32) return {y};
    Tensor out = places_.make(0, a.dtype(), y.shape());
    for (int64_t i = 0; i < y.size(); ++i) out.set(i, yd[i]);  // rounds once, to float16
    return {out};
  }

  KernelInfo info() const override { return {node_.label(), "halide", "batched matmul", compile_ms_}; }

 private:
  const KernelCode& code() {
    if (!code_.pipeline) {
      KernelRequest request;
      request.kind = KernelRequest::Kind::BatchMatMul;
      request.node = node_.label();
      code_ = source_.get(request);
      compile_ms_ = code_.compile_ms;
    }
    return code_;
  }

  const Node& node_;
  KernelSource& source_;
  KernelCode code_;
  double compile_ms_ = 0;
};

// tetra.Attention on schedules/cpu/attention.h. Its operands are strided views of its inputs and its
// result may be written transposed (runtime/ops/attention_layout.h): the batch dims that merge into one
// stride in all four become the kernel's batch dim, and any outer ones are looped over here.
class HalideAttention : public NodeKernel {
 public:
  HalideAttention(const Node& node, KernelSource& source) : node_(node) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Attention;
    request.node = node.label();
    code_ = source.get(request);
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor &a_in = inputs.at(0), &b_in = inputs.at(1), &v_in = inputs.at(2);
    check(a_in.dtype() == DType::Float32 && b_in.dtype() == DType::Float32 && v_in.dtype() == DType::Float32,
          ErrorKind::Invalid, [&] { return node_.label() + ": inputs must be float32"; });
    const AttentionLayout l =
        AttentionLayout::of(node_, {a_in.shape().size(), b_in.shape().size(), v_in.shape().size()});
    struct Operand {
      const float* data;
      Shape shape;
      std::vector<int64_t> strides;
    };
    auto operand = [&](const Tensor& t, const OperandView& view) {
      for (size_t d = 0; d < view.fixed.size(); ++d)
        check(view.fixed[d] < t.shape()[d], ErrorKind::Invalid,
              [&] { return node_.label() + ": a view holds an index past its input " + shape_str(t.shape()); });
      return Operand{t.data<float>() + view.offset(t.shape()), view.shape(t.shape()), view.strides(t.shape())};
    };
    const Operand a = operand(a_in, l.a), b = operand(b_in, l.b), v = operand(v_in, l.v);
    const Shape &as = a.shape, &bs = b.shape, &vs = v.shape;
    size_t r = as.size();
    check(r >= 2 && bs.size() == r && vs.size() == r && std::equal(as.begin(), as.end() - 2, bs.begin()) &&
              std::equal(as.begin(), as.end() - 2, vs.begin()) && as[r - 1] == bs[r - 2] && bs[r - 1] == vs[r - 2] &&
              (l.y_perm.empty() || l.y_perm.size() == r),
          ErrorKind::Invalid, [&] {
            return node_.label() + ": operands " + shape_str(as) + ", " + shape_str(bs) + ", " + shape_str(vs) +
                   " are not [..., M, K], [..., K, N], [..., N, D] with the same batch dims";
          });
    const int64_t M = as[r - 2], K = as[r - 1], N = bs[r - 1], D = vs[r - 1];
    Shape result = as;
    result.back() = D;
    Tensor y = places_.make(0, DType::Float32, permuted(result, l.y_perm));
    if (y.size() == 0) return {y};
    check(N > 0, ErrorKind::Invalid, [&] { return node_.label() + ": attention over no keys"; });
    // The result's strides as computed (dim y_perm[i] is the written tensor's dim i).
    std::vector<int64_t> y_strides = strides_of(y.shape());
    if (!l.y_perm.empty()) {
      std::vector<int64_t> by_result(r);
      for (size_t i = 0; i < r; ++i) by_result[size_t(l.y_perm[i])] = y_strides[i];
      y_strides = by_result;
    }
    for (const Tensor* t : {&a_in, &b_in, &v_in})
      check(t->size() <= INT32_MAX && y.size() <= INT32_MAX, ErrorKind::Invalid,
            [&] { return node_.label() + ": a tensor is too large for a Halide kernel's 32-bit strides"; });

    // Batch dims, innermost first, merged where the next one steps over the whole inner run in all four.
    const std::vector<int64_t>* strides[4] = {&a.strides, &b.strides, &v.strides, &y_strides};
    struct BatchDim {
      int64_t extent;
      int64_t stride[4];
    };
    std::vector<BatchDim> batch;
    for (size_t d = r - 2; d-- > 0;) {
      if (as[d] == 1) continue;
      BatchDim dim{as[d], {}};
      for (int i = 0; i < 4; ++i) dim.stride[i] = (*strides[i])[d];
      bool merges = !batch.empty();
      for (int i = 0; i < 4 && merges; ++i) merges = dim.stride[i] == batch.back().stride[i] * batch.back().extent;
      if (merges)
        batch.back().extent *= dim.extent;
      else
        batch.push_back(dim);
    }
    if (batch.empty()) batch.push_back(BatchDim{1, {0, 0, 0, 0}});
    int64_t outer = 1;
    for (size_t i = 1; i < batch.size(); ++i) outer *= batch[i].extent;

    auto buffer = [&](const float* data, int i, int64_t inner, int64_t rows) {
      const std::vector<int64_t>& s = *strides[i];
      halide_dimension_t dims[3] = {{0, int32_t(inner), int32_t(s[r - 1]), 0},
                                    {0, int32_t(rows), int32_t(s[r - 2]), 0},
                                    {0, int32_t(batch[0].extent), int32_t(batch[0].stride[i]), 0}};
      return Halide::Runtime::Buffer<float>(const_cast<float*>(data), 3, dims);
    };
    float scale = float(l.scale);
    for (int64_t o = 0; o < outer; ++o) {
      int64_t at[4] = {0, 0, 0, 0};
      for (size_t i = 1, rest = size_t(o); i < batch.size(); rest /= size_t(batch[i].extent), ++i)
        for (int k = 0; k < 4; ++k) at[k] += int64_t(rest % size_t(batch[i].extent)) * batch[i].stride[k];
      Halide::Runtime::Buffer<float> A = buffer(a.data + at[0], 0, K, M), B = buffer(b.data + at[1], 1, N, K);
      Halide::Runtime::Buffer<float> V = buffer(v.data + at[2], 2, D, N);
      Halide::Runtime::Buffer<float> Y = buffer(y.mutable_data<float>() + at[3], 3, D, M);
      void* argv[] = {A.raw_buffer(), B.raw_buffer(), V.raw_buffer(), &scale, Y.raw_buffer()};
      dsl::Status st = dsl::call_pipeline(*code_.pipeline, argv, "attention");
      check(st.ok(), ErrorKind::Invalid,
            [&] { return node_.label() + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
    }
    return {y};
  }

  KernelInfo info() const override {
    std::string detail = "attention: scores, softmax and the weighted sum per tile of rows, no scores in memory";
    const AttentionLayout l = AttentionLayout::of(node_, {});
    if (!l.a.identity() || !l.b.identity() || !l.v.identity())
      detail += "; operands read in place as strided views of their inputs";
    if (!l.y_perm.empty()) detail += "; the result written transposed";
    return {node_.label(), "halide", detail, code_.compile_ms};
  }

 private:
  const Node& node_;
  KernelCode code_;
};

}  // namespace

std::unique_ptr<NodeKernel> make_halide_attention_kernel(const Node& node, KernelSource& source) {
  return std::make_unique<HalideAttention>(node, source);
}

std::unique_ptr<NodeKernel> make_halide_matmul_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                      std::string* why_not) {
  if (!node.domain.empty() || node.op_type != "MatMul") {
    *why_not = "not a MatMul";
    return nullptr;
  }
  for (size_t i = 0; i < 2; ++i) {
    const ValueInfo* v = graph.find_value(node.input(i));
    if (!v || (v->dtype != DType::Float32 && v->dtype != DType::Float16)) {
      *why_not = "input " + std::to_string(i) + " is not float32 or float16";
      return nullptr;
    }
    if (v->has_shape)
      for (const Dim& d : v->shape)
        if (d.known() && d.value > INT32_MAX) {
          *why_not = "a dimension is too large for a Halide kernel";
          return nullptr;
        }
  }
  const ValueInfo* a = graph.find_value(node.input(0));
  const ValueInfo* b = graph.find_value(node.input(1));
  if (a->dtype != b->dtype) {
    *why_not = "the inputs' types differ";
    return nullptr;
  }
  return std::make_unique<HalideBatchMatMul>(node, source);
}

}  // namespace tetra
