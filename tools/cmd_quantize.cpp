// tetra quantize: weight-only round-to-nearest int4 quantization of an fp32/fp16 ONNX model.
//
// Quantized: the constant weight of MatMul (B [K,N]), Gemm (B, honouring transB) and Conv (W [M,C/g,...]).
// Granularity, always along the reduction axis:
//   MatMul/Gemm: blocks of --block-size along K; per output column when K <= block size.
//   Conv:        blocks along the input channels (axis 1) when C/g > block size, otherwise one scale
//                per output channel (axis 0). Blocking over C keeps every block inside one kernel
//                position, which is the only blocking DequantizeLinear can express for conv weights.
// Ranges (round half to even, ties are rare):
//   symmetric:  int4, scale = max|w| / 7, codes in [-7, 7]. -8 stays unused so the grid is symmetric
//               and the largest weight is exact instead of clipped.
//   asymmetric: uint4 + zero point, scale = (max - min) / 15 over a range widened to include 0 (so
//               0 is exact and the zero point fits in [0, 15]).
// Formats:
//   dq:          int4/uint4 initializer -> DequantizeLinear (opset 21, block_size) -> original op.
//   matmulnbits: MatMul and Gemm (transA=0, alpha=1; bias folded with beta) become
//                com.microsoft.MatMulNBits with B [N, blocks, block/2]; everything else uses dq.
// DequantizeLinear needs ai.onnx opset >= 21: older models are upgraded where the upgrade is
// mechanical (attributes that became inputs) and refused, naming the node, where meaning changed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <unistd.h>

#include <onnx/onnx_pb.h>

#include "importer/error.h"
#include "importer/graph.h"
#include "importer/onnx_loader.h"
#include "tools/commands.h"

namespace tetra::cli {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kDqOpset = 21;      // DequantizeLinear with int4 and block_size
constexpr int64_t kInt4IrVersion = 10;  // int4 element types
constexpr int64_t kProtobufLimit = (int64_t(1) << 31) - 1;

struct Options {
  std::string model, output, format = "dq";
  int bits = 4;
  int64_t block_size = 32;
  bool asymmetric = false;
};

// ---- quantization ---------------------------------------------------------------------------

// Quantizes `w` with one scale per block of `block` along `axis`, or per index along `axis` when
// `block` is 0. The result is laid out as DequantizeLinear's inputs.
QuantizedWeight quantize_weight(const Tensor& w, const std::string& name, int64_t axis, int64_t block,
                                bool asymmetric) {
  QuantizedWeight q;
  q.name = name;
  q.pattern = "DequantizeLinear";
  q.axis = axis;
  q.block_size = block;
  Shape param_shape = w.shape();
  if (block > 0) param_shape[axis] = (param_shape[axis] + block - 1) / block;
  else param_shape = {w.shape()[axis]};
  q.data = Tensor(asymmetric ? DType::UInt4 : DType::Int4, w.shape());
  q.scale = Tensor(w.dtype(), param_shape);
  if (asymmetric) q.zero_point = Tensor(DType::UInt4, param_shape);

  std::vector<double> lo(q.scale.size(), 0.0), hi(q.scale.size(), 0.0);
  for (int64_t i = 0; i < w.size(); ++i) {
    double v = w.get(i);
    check(std::isfinite(v), ErrorKind::Invalid, "weight '" + name + "' holds a non-finite value at element " + std::to_string(i));
    int64_t p = q.param_index(i);
    lo[p] = std::min(lo[p], v);
    hi[p] = std::max(hi[p], v);
  }
  // Codes are computed with the scale as stored (fp16 models round it), so DequantizeLinear
  // reproduces exactly what was measured.
  std::vector<double> scale(lo.size()), zero(lo.size(), 0.0);
  for (size_t p = 0; p < lo.size(); ++p) {
    q.scale.set(p, asymmetric ? (hi[p] - lo[p]) / 15.0 : std::max(-lo[p], hi[p]) / 7.0);
    scale[p] = q.scale.get(p);
    if (!(scale[p] > 0) || !std::isfinite(scale[p])) {  // an all-zero block, or one below fp16's range
      q.scale.set(p, 1.0);
      scale[p] = 1.0;
    }
    if (asymmetric) {
      zero[p] = std::clamp(std::nearbyint(-lo[p] / scale[p]), 0.0, 15.0);
      q.zero_point.set_int(p, static_cast<int64_t>(zero[p]));
    }
  }
  const double qmin = asymmetric ? 0 : -7, qmax = asymmetric ? 15 : 7;
  for (int64_t i = 0; i < w.size(); ++i) {
    int64_t p = q.param_index(i);
    q.data.set_int(i, static_cast<int64_t>(std::clamp(std::nearbyint(w.get(i) / scale[p]) + zero[p], qmin, qmax)));
  }
  return q;
}

struct ErrorStats {
  double max_abs = 0, rel_rms = 0;
};
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

// MatMulNBits' layout of a weight quantized as [N, K] in blocks along K: B [N, blocks, block/2] uint8
// (the padding past K holds the zero point, i.e. the value 0), scales [N * blocks], zero points
// packed two per byte per row. Symmetric int4 codes become uint4 around the default zero point 8.
struct NBitsWeight {
  Tensor b, scales, zero_points;
};
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

// ---- model helpers --------------------------------------------------------------------------

void add_attr(onnx::NodeProto* node, const std::string& name, int64_t value) {
  auto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}
const onnx::AttributeProto* find_attr(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t attr_int(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  const auto* a = find_attr(node, name);
  return a ? a->i() : fallback;
}
float attr_float(const onnx::NodeProto& node, const std::string& name, float fallback) {
  const auto* a = find_attr(node, name);
  return a ? a->f() : fallback;
}
void remove_attr(onnx::NodeProto* node, const std::string& name) {
  auto* attrs = node->mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
}
std::string label(const onnx::NodeProto& node) { return node.op_type() + " '" + node.name() + "'"; }
bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

template <class F>
void for_each_subgraph(onnx::NodeProto* node, F&& f) {
  for (auto& a : *node->mutable_attribute()) {
    if (a.has_g()) f(a.mutable_g());
    for (auto& g : *a.mutable_graphs()) f(&g);
  }
}

// Hands out names no value, initializer or node of the model uses yet.
class NameSet {
 public:
  explicit NameSet(onnx::GraphProto* g) { collect(g); }
  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
    used_.insert(name);
    return name;
  }

 private:
  void collect(onnx::GraphProto* g) {
    for (const auto& t : g->initializer()) used_.insert(t.name());
    for (const auto& v : g->input()) used_.insert(v.name());
    for (auto& n : *g->mutable_node()) {
      used_.insert(n.name());
      used_.insert(n.output().begin(), n.output().end());
      for_each_subgraph(&n, [&](onnx::GraphProto* sub) { collect(sub); });
    }
  }
  std::set<std::string> used_;
};

// Counts every read of each name (node inputs in all subgraphs, graph outputs).
void count_uses(onnx::GraphProto* g, std::map<std::string, int>& uses) {
  for (auto& n : *g->mutable_node()) {
    for (const auto& in : n.input()) ++uses[in];
    for_each_subgraph(&n, [&](onnx::GraphProto* sub) { count_uses(sub, uses); });
  }
  for (const auto& out : g->output()) ++uses[out.name()];
}

// ---- opset upgrade --------------------------------------------------------------------------

// ai.onnx ops whose meaning or signature changed between opset 7 and 21, by the version of the
// last change; models older than that are refused. Ops not listed only gained types or optional
// attributes/inputs whose defaults keep the old behaviour.
const std::map<std::string, int64_t> kChangedAt = {
    {"Slice", 10}, {"TopK", 10}, {"Scan", 9}, {"BatchNormalization", 9}, {"Clip", 11}, {"Pad", 11},
    {"Resize", 11}, {"Softmax", 13}, {"LogSoftmax", 13}, {"Hardmax", 13}, {"RoiAlign", 16},
    {"GridSample", 20}, {"DFT", 20}, {"GroupNormalization", 21}, {"Upsample", 1000}, {"Scatter", 1000}};
// Attributes that became input 1 (same values) at the given opset: these upgrade mechanically.
const std::map<std::string, std::pair<int64_t, std::string>> kAttrBecameInput = {
    {"Squeeze", {13, "axes"}}, {"Unsqueeze", {13, "axes"}}, {"ReduceSum", {13, "axes"}},
    {"Split", {13, "split"}}, {"Dropout", {12, "ratio"}}, {"ReduceMean", {18, "axes"}},
    {"ReduceMax", {18, "axes"}}, {"ReduceMin", {18, "axes"}}, {"ReduceProd", {18, "axes"}},
    {"ReduceL1", {18, "axes"}}, {"ReduceL2", {18, "axes"}}, {"ReduceLogSum", {18, "axes"}},
    {"ReduceLogSumExp", {18, "axes"}}, {"ReduceSumSquare", {18, "axes"}}};

// Throws naming `node` when it cannot move from opset `from` to kDqOpset unchanged.
void check_upgradable(const onnx::NodeProto& node, int64_t from) {
  const std::string why = label(node) + " cannot be moved from ai.onnx opset " + std::to_string(from) + " to " +
                          std::to_string(kDqOpset) + " (needed for int4 DequantizeLinear): ";
  const std::string& op = node.op_type();
  // Before 13 the softmax family flattened from `axis`; with axis -1 that is the same single-axis op.
  bool softmax = op == "Softmax" || op == "LogSoftmax" || op == "Hardmax";
  if (softmax && attr_int(node, "axis", 1) == -1) return;
  auto it = kChangedAt.find(op);
  if (it != kChangedAt.end() && from < it->second)
    fail(ErrorKind::Unsupported, why + "its definition changed" +
                                     (it->second < 1000 ? " in opset " + std::to_string(it->second) : "; it was removed") +
                                     ". Convert the model to opset 21 first (e.g. with onnx.version_converter)");
  if (node.op_type() == "BatchNormalization" && from < 14 && node.output_size() > 1)
    fail(ErrorKind::Unsupported, why + "training-mode outputs changed in opset 14");
  if (node.op_type() == "Resize" && from < 13) {
    const auto* mode = find_attr(node, "coordinate_transformation_mode");
    check(!mode || mode->s() != "tf_half_pixel_for_nn", ErrorKind::Unsupported,
          why + "coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed in opset 13");
  }
}

// Rewrites the default-domain nodes of `g` (and its subgraphs) from opset `from` to kDqOpset.
void upgrade_graph(onnx::GraphProto* g, int64_t from, NameSet& names) {
  for (auto& node : *g->mutable_node()) {
    for_each_subgraph(&node, [&](onnx::GraphProto* sub) { upgrade_graph(sub, from, names); });
    if (!is_default_domain(node.domain())) continue;
    check_upgradable(node, from);
    auto moved = kAttrBecameInput.find(node.op_type());
    if (moved != kAttrBecameInput.end() && from < moved->second.first) {
      if (const auto* a = find_attr(node, moved->second.second)) {
        std::vector<int64_t> ints(a->ints().begin(), a->ints().end());
        Tensor value = a->type() == onnx::AttributeProto::FLOAT
                           ? Tensor::scalar(DType::Float32, a->f())
                           : Tensor::from_ints(DType::Int64, {a->ints_size()}, ints);
        std::string name = names.fresh(node.name() + "_" + moved->second.second);
        tensor_to_proto(value, name, g->add_initializer());
        while (node.input_size() < 2) node.add_input("");
        node.set_input(1, name);
        remove_attr(&node, moved->second.second);
      }
    }
    // From 18 an even Split must say into how many outputs.
    if (node.op_type() == "Split" && from < 18 && (node.input_size() < 2 || node.input(1).empty()) &&
        !find_attr(node, "num_outputs"))
      add_attr(&node, "num_outputs", node.output_size());
  }
}

void set_opset(onnx::ModelProto* model, const std::string& domain, int64_t version) {
  for (auto& imp : *model->mutable_opset_import()) {
    if (imp.domain() == domain || (domain.empty() && imp.domain() == "ai.onnx")) {
      imp.set_version(version);
      return;
    }
  }
  auto* imp = model->add_opset_import();
  imp->set_domain(domain);
  imp->set_version(version);
}

int64_t default_opset(const onnx::ModelProto& model) {
  for (const auto& imp : model.opset_import())
    if (is_default_domain(imp.domain())) return imp.version();
  fail(ErrorKind::Invalid, "the model imports no ai.onnx opset");
}

// ---- the command ----------------------------------------------------------------------------

// One weight to quantize and how.
struct Job {
  int node;              // index in the main graph
  std::string weight;    // initializer name
  int64_t axis = 0, block = 0;  // DequantizeLinear layout (block 0: per-axis)
  bool nbits = false;    // becomes MatMulNBits instead
  bool transposed = false;  // Gemm transB=1: the weight is stored [N, K]
};

struct Report {
  std::string layer, op, weight, shape, granularity;
  ErrorStats error;
};

class Quantizer {
 public:
  Quantizer(const Options& opt, onnx::ModelProto& model, const std::string& base_dir)
      : opt_(opt), model_(model), g_(model.mutable_graph()), names_(g_), base_dir_(base_dir) {
    count_uses(g_, uses_);
    for (const auto& in : g_->input()) graph_inputs_.insert(in.name());
    for (int i = 0; i < g_->initializer_size(); ++i) init_index_[g_->initializer(i).name()] = i;
  }

  void run() {
    std::vector<Job> jobs = plan();
    bool needs_dq = std::any_of(jobs.begin(), jobs.end(), [](const Job& j) { return !j.nbits; });
    int64_t opset = default_opset(model_);
    if (needs_dq && opset < kDqOpset) {
      check(opset >= 7, ErrorKind::Unsupported, "ai.onnx opset " + std::to_string(opset) + " is too old to upgrade");
      upgrade_graph(g_, opset, names_);
      set_opset(&model_, "", kDqOpset);
      notes_.push_back("raised ai.onnx opset from " + std::to_string(opset) + " to " + std::to_string(kDqOpset));
    }
    if (needs_dq) model_.set_ir_version(std::max<int64_t>(model_.ir_version(), kInt4IrVersion));
    if (std::any_of(jobs.begin(), jobs.end(), [](const Job& j) { return j.nbits; })) set_opset(&model_, "com.microsoft", 1);

    std::vector<onnx::NodeProto> dq_nodes;
    for (const Job& job : jobs) {
      if (job.nbits) to_nbits(job);
      else dq_nodes.push_back(to_dq(job));
    }
    // DequantizeLinear nodes read only initializers: put them first, keeping topological order.
    auto* nodes = g_->mutable_node();
    for (auto& n : dq_nodes) *nodes->Add() = std::move(n);
    std::rotate(nodes->begin(), nodes->end() - dq_nodes.size(), nodes->end());
    drop_initializers();
  }

  const std::vector<Report>& reports() const { return reports_; }
  const std::vector<std::string>& notes() const { return notes_; }
  int64_t original_weight_bytes() const { return before_bytes_; }
  int64_t quantized_weight_bytes() const { return after_bytes_; }

 private:
  // Decides which weights to quantize and with which layout, noting every layer it skips.
  std::vector<Job> plan() {
    std::vector<Job> jobs;
    for (int k = 0; k < g_->node_size(); ++k) {
      const onnx::NodeProto& n = g_->node(k);
      const std::string& op = n.op_type();
      if (!is_default_domain(n.domain()) || (op != "MatMul" && op != "Gemm" && op != "Conv")) continue;
      if (n.input_size() < 2) continue;
      const std::string& w = n.input(1);
      auto skip = [&](const std::string& why) { notes_.push_back("skipped " + label(n) + ": " + why); };
      if (!init_index_.count(w) || graph_inputs_.count(w)) {
        skip("its weight '" + w + "' is not a constant initializer");
        continue;
      }
      const onnx::TensorProto& t = g_->initializer(init_index_.at(w));
      int64_t rank = t.dims_size();
      if (t.data_type() != int32_t(DType::Float32) && t.data_type() != int32_t(DType::Float16)) {
        skip("weight '" + w + "' is not float32 or float16");
        continue;
      }
      if (uses_[w] != 1) {
        skip("weight '" + w + "' is shared with other nodes");
        continue;
      }
      if (op == "Conv" ? rank < 3 : rank != 2) {
        skip("weight '" + w + "' has rank " + std::to_string(rank));
        continue;
      }
      // Blocks along the reduction axis when it is longer than a block, else one scale per output
      // channel (Conv: axis 0) or column (MatMul/Gemm: the non-K axis).
      Job job{k, w};
      job.transposed = op == "Gemm" && attr_int(n, "transB", 0) != 0;
      int64_t reduce_axis = op == "Conv" || job.transposed ? 1 : 0;
      int64_t channel_axis = op == "Conv" ? 0 : 1 - reduce_axis;
      bool blocked = t.dims(reduce_axis) > opt_.block_size;
      job.axis = blocked ? reduce_axis : channel_axis;
      job.block = blocked ? opt_.block_size : 0;
      job.nbits = op != "Conv" && opt_.format == "matmulnbits" && nbits_ok(n);
      jobs.push_back(job);
    }
    return jobs;
  }

  // MatMulNBits computes A x B^T + bias; Gemm fits when it does not transpose A or scale the product.
  bool nbits_ok(const onnx::NodeProto& n) {
    if (n.op_type() == "MatMul") return true;
    std::string why;
    if (attr_int(n, "transA", 0) != 0) why = "transA=1";
    else if (attr_float(n, "alpha", 1.0f) != 1.0f) why = "alpha != 1";
    else if (n.input_size() > 2 && !n.input(2).empty()) {
      const std::string& c = n.input(2);
      if (!init_index_.count(c) || graph_inputs_.count(c)) why = "its bias is not a constant";
      else {
        const auto& t = g_->initializer(init_index_.at(c));
        int64_t count = 1;
        for (int64_t d : t.dims()) count *= d;
        int64_t N = attr_int(n, "transB", 0) ? g_->initializer(init_index_.at(n.input(1))).dims(0)
                                               : g_->initializer(init_index_.at(n.input(1))).dims(1);
        if (count != N || t.dims_size() < 1 || t.dims_size() > 2) why = "its bias is not one value per column";
      }
    }
    if (why.empty()) return true;
    notes_.push_back(label(n) + " uses DequantizeLinear instead of MatMulNBits: " + why);
    return false;
  }

  Tensor load(const std::string& name) {
    return tensor_from_proto(g_->initializer(init_index_.at(name)), base_dir_);
  }

  // Adds an initializer; `weight_part` counts it in the quantized weights' size.
  std::string add_initializer(const std::string& base, const Tensor& t, bool weight_part = true) {
    std::string name = names_.fresh(base);
    tensor_to_proto(t, name, g_->add_initializer());
    if (weight_part) after_bytes_ += t.byte_size();
    return name;
  }

  // Reports the layer; `q` quantizes `reference` (the weight, possibly transposed).
  void record(const onnx::NodeProto& n, const Job& job, const Tensor& original, const Tensor& reference,
              const QuantizedWeight& q, const std::string& granularity) {
    reports_.push_back({n.name().empty() ? "(unnamed)" : n.name(), n.op_type(), job.weight,
                        shape_str(original.shape()), granularity, measure(q, reference)});
    before_bytes_ += original.byte_size();
    dropped_.insert(job.weight);
  }

  // weight -> int4 initializer + DequantizeLinear producing the weight's name, so the consumer is unchanged.
  onnx::NodeProto to_dq(const Job& job) {
    const onnx::NodeProto& n = g_->node(job.node);
    Tensor w = load(job.weight);
    QuantizedWeight q = quantize_weight(w, job.weight, job.axis, job.block, opt_.asymmetric);
    record(n, job, w, w, q, q.granularity());
    onnx::NodeProto dq;
    dq.set_op_type("DequantizeLinear");
    dq.set_name(names_.fresh(job.weight + "_dequantize"));
    dq.add_input(add_initializer(job.weight + "_q4", q.data));
    dq.add_input(add_initializer(job.weight + "_scale", q.scale));
    if (opt_.asymmetric) dq.add_input(add_initializer(job.weight + "_zero_point", q.zero_point));
    dq.add_output(job.weight);
    add_attr(&dq, "axis", q.axis);
    if (q.block_size > 0) add_attr(&dq, "block_size", q.block_size);
    return dq;
  }

  // MatMul / Gemm -> com.microsoft.MatMulNBits, quantized as [N, K] in blocks along K.
  void to_nbits(const Job& job) {
    onnx::NodeProto& n = *g_->mutable_node(job.node);
    Tensor w = load(job.weight);
    Tensor w_nk = job.transposed ? w : transpose_2d(w);
    const int64_t N = w_nk.shape()[0], K = w_nk.shape()[1];
    QuantizedWeight q = quantize_weight(w_nk, job.weight, 1, opt_.block_size, opt_.asymmetric);
    record(n, job, w, w_nk, q, "MatMulNBits(block " + std::to_string(opt_.block_size) + ")");
    NBitsWeight nb = to_matmul_nbits(q);

    std::string bias;
    if (n.op_type() == "Gemm" && n.input_size() > 2 && !n.input(2).empty()) {
      Tensor c = load(n.input(2));
      double beta = attr_float(n, "beta", 1.0f);
      std::vector<double> values = c.to_doubles();
      for (double& v : values) v *= beta;
      bias = add_initializer(n.input(2) + "_bias", Tensor::from_doubles(w.dtype(), {N}, values), false);
      if (--uses_[n.input(2)] == 0) dropped_.insert(n.input(2));
    }
    std::vector<std::string> inputs = {n.input(0), add_initializer(job.weight + "_q4", nb.b),
                                       add_initializer(job.weight + "_scale", nb.scales)};
    inputs.push_back(opt_.asymmetric ? add_initializer(job.weight + "_zero_point", nb.zero_points) : "");
    inputs.push_back("");  // g_idx
    inputs.push_back(bias);
    while (inputs.back().empty()) inputs.pop_back();

    n.set_op_type("MatMulNBits");
    n.set_domain("com.microsoft");
    n.clear_input();
    for (const auto& in : inputs) n.add_input(in);
    n.clear_attribute();
    add_attr(&n, "K", K);
    add_attr(&n, "N", N);
    add_attr(&n, "bits", 4);
    add_attr(&n, "block_size", opt_.block_size);
  }

  void drop_initializers() {
    auto* inits = g_->mutable_initializer();
    auto keep = std::remove_if(inits->begin(), inits->end(),
                               [&](const onnx::TensorProto& t) { return dropped_.count(t.name()) != 0; });
    inits->erase(keep, inits->end());
  }

  const Options& opt_;
  onnx::ModelProto& model_;
  onnx::GraphProto* g_;
  NameSet names_;
  std::string base_dir_;
  std::map<std::string, int> uses_;
  std::set<std::string> graph_inputs_;
  std::map<std::string, int> init_index_;
  std::set<std::string> dropped_;
  std::vector<Report> reports_;
  std::vector<std::string> notes_;
  int64_t before_bytes_ = 0, after_bytes_ = 0;
};

void validate(const Options& opt) {
  check(opt.bits == 4, ErrorKind::Invalid,
        "--bits " + std::to_string(opt.bits) + " is not supported: tetra quantizes weights to 4 bits only");
  check(opt.format == "dq" || opt.format == "matmulnbits", ErrorKind::Invalid,
        "--format '" + opt.format + "' is not one of: dq, matmulnbits");
  check(opt.block_size >= 2, ErrorKind::Invalid, "--block-size " + std::to_string(opt.block_size) + " must be >= 2");
  check(opt.format != "matmulnbits" || (opt.block_size >= 16 && (opt.block_size & (opt.block_size - 1)) == 0),
        ErrorKind::Invalid,
        "--block-size " + std::to_string(opt.block_size) + ": MatMulNBits needs a power of two >= 16");
  fs::path out(opt.output);
  fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  std::error_code ec;
  check(fs::is_directory(dir, ec), ErrorKind::Io, "output folder '" + dir.string() + "' does not exist");
  check(!fs::is_directory(out, ec), ErrorKind::Io, "output '" + opt.output + "' is a folder");
}

// Inlines tensors kept in external files (the output is a single file); refuses what protobuf cannot hold.
void inline_external_data(onnx::ModelProto& model, const std::string& base_dir) {
  int64_t external = 0;
  for (const auto& t : model.graph().initializer()) {
    if (t.data_location() != onnx::TensorProto::EXTERNAL) continue;
    int64_t count = 1;
    for (int64_t d : t.dims()) count *= std::max<int64_t>(d, 0);
    int64_t length = storage_bytes(dtype_from_onnx(t.data_type()), count);
    for (const auto& e : t.external_data())
      if (e.key() == "length") length = std::max<int64_t>(length, std::atoll(e.value().c_str()));
    external += length;
  }
  check(external <= kProtobufLimit, ErrorKind::Unsupported,
        "the model keeps " + std::to_string(external >> 20) +
            " MiB of external data; tetra quantize writes single-file models, which protobuf limits to 2 GiB");
  for (auto& t : *model.mutable_graph()->mutable_initializer())
    if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      std::string name = t.name();
      tensor_to_proto(tensor_from_proto(t, base_dir), name, &t);
    }
}

// Writes next to the destination, then renames: readers never see a half-written model.
void write_atomically(const onnx::ModelProto& model, const std::string& path) {
  check(static_cast<int64_t>(model.ByteSizeLong()) <= kProtobufLimit, ErrorKind::Unsupported,
        "the quantized model would exceed protobuf's 2 GiB limit");
  std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    bool ok = out && model.SerializeToOstream(&out);
    out.close();
    if (!ok || !out) {
      std::remove(tmp.c_str());
      fail(ErrorKind::Io, "cannot write '" + path + "'");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, "cannot write '" + path + "': " + ec.message());
  }
}

std::string human_size(int64_t bytes) {
  char buf[32];
  if (bytes < 1024) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else if (bytes < (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  return buf;
}

void run_quantize(const Options& opt) {
  validate(opt);
  onnx::ModelProto model = read_model_file(opt.model);
  const std::string base_dir = fs::path(opt.model).parent_path().empty() ? "." : fs::path(opt.model).parent_path().string();
  int64_t size_before = static_cast<int64_t>(model.ByteSizeLong());
  inline_external_data(model, base_dir);
  Quantizer quantizer(opt, model, base_dir);
  quantizer.run();

  std::printf("%-24s %-6s %-24s %-16s %-28s %12s %10s\n", "layer", "op", "weight", "shape", "granularity",
              "max abs err", "rel RMS");
  for (const Report& r : quantizer.reports())
    std::printf("%-24s %-6s %-24s %-16s %-28s %12.3e %10.3e\n", r.layer.c_str(), r.op.c_str(), r.weight.c_str(),
                r.shape.c_str(), r.granularity.c_str(), r.error.max_abs, r.error.rel_rms);
  for (const std::string& note : quantizer.notes()) std::printf("note: %s\n", note.c_str());
  write_atomically(model, opt.output);
  std::printf("quantized %zu weights (%s, %s): weights %s -> %s, model %s -> %s\nwrote %s\n", quantizer.reports().size(),
              opt.asymmetric ? "asymmetric uint4" : "symmetric int4", opt.format.c_str(),
              human_size(quantizer.original_weight_bytes()).c_str(), human_size(quantizer.quantized_weight_bytes()).c_str(),
              human_size(size_before).c_str(), human_size(static_cast<int64_t>(model.ByteSizeLong())).c_str(), opt.output.c_str());
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize the weights of an fp32/fp16 ONNX model to int4 (round to nearest)");
  cmd->add_option("model", opt->model, "input ONNX model")->required();
  cmd->add_option("-o,--output", opt->output, "output ONNX model (written atomically)")->required();
  cmd->add_option("--bits", opt->bits, "weight bits (only 4)")->capture_default_str();
  cmd->add_option("--block-size", opt->block_size, "elements per scale along the reduction axis")->capture_default_str();
  cmd->add_flag("--asymmetric", opt->asymmetric, "uint4 with per-block zero points (default: symmetric int4)");
  cmd->add_option("--format", opt->format, "dq (DequantizeLinear, opset 21) or matmulnbits (com.microsoft)")->capture_default_str();
  cmd->callback([opt] { run_quantize(*opt); });
}

}  // namespace tetra::cli
