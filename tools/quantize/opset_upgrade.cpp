#include "tools/quantize/opset_upgrade.h"

#include <cfloat>
#include <map>

#include <onnx/onnx_pb.h>

#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/reference_evaluator.h"
#include "tools/quantize/proto_util.h"

namespace tetra::quantize {
namespace {

// ai.onnx operators whose definition changed (or that were removed) at the given opset and that
// have no adapter here: a model older than that is refused.
const std::map<std::string, int64_t> kNoAdapter = {
    {"Scan", 9}, {"TopK", 10}, {"Scatter", 11}, {"RoiAlign", 16}, {"GridSample", 20}, {"DFT", 20},
    {"GroupNormalization", 21}};

// Reductions whose `axes` attribute became input 1, by the opset of the change.
const std::map<std::string, int64_t> kAxesBecameInput = {
    {"Squeeze", 13}, {"Unsqueeze", 13}, {"ReduceSum", 13}, {"ReduceMean", 18}, {"ReduceMax", 18},
    {"ReduceMin", 18}, {"ReduceProd", 18}, {"ReduceL1", 18}, {"ReduceL2", 18}, {"ReduceLogSum", 18},
    {"ReduceLogSumExp", 18}, {"ReduceSumSquare", 18}};

// Element types and ranks of the model's values, as far as tetra can infer them before the upgrade.
class ValueTypes {
 public:
  ValueTypes(const onnx::ModelProto& model, const std::string& base_dir) {
    try {
      LoadOptions raw;
      raw.fuse_int4 = raw.fuse_epilogues = false;
      Graph g = import_model(model, base_dir, raw);
      infer_shapes(g);
      values_ = g.values;
    } catch (const std::exception&) {
      // Operators tetra cannot infer: fall back on the types the model declares.
    }
    auto declare = [&](const onnx::ValueInfoProto& v) {
      if (values_.count(v.name()) || !v.type().has_tensor_type()) return;
      ValueInfo info;
      info.dtype = dtype_from_onnx(v.type().tensor_type().elem_type());
      info.has_shape = v.type().tensor_type().has_shape();
      info.shape.resize(v.type().tensor_type().shape().dim_size());
      values_[v.name()] = info;
    };
    for (const auto& v : model.graph().input()) declare(v);
    for (const auto& v : model.graph().value_info()) declare(v);
    for (const auto& v : model.graph().output()) declare(v);
    for (const auto& t : model.graph().initializer()) {
      ValueInfo info;
      info.dtype = dtype_from_onnx(t.data_type());
      info.has_shape = true;
      info.shape.resize(t.dims_size());
      values_.emplace(t.name(), info);
    }
  }
  // The element type, float32 when unknown (the type of nearly every activation in such models).
  DType dtype(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() || it->second.dtype == DType::Undefined ? DType::Float32 : it->second.dtype;
  }
  // The rank, or -1 when unknown.
  int64_t rank(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() || !it->second.has_shape ? -1 : static_cast<int64_t>(it->second.shape.size());
  }

 private:
  std::map<std::string, ValueInfo> values_;
};

class Upgrader {
 public:
  Upgrader(onnx::ModelProto& model, int64_t from, int64_t target, const ValueTypes& types)
      : main_(model.mutable_graph()), from_(from), target_(target), types_(types), names_(*main_),
        uses_(count_uses(*main_)) {}

  void graph(onnx::GraphProto* g) {
    google::protobuf::RepeatedPtrField<onnx::NodeProto> out;
    for (auto& node : *g->mutable_node()) {
      for_each_subgraph(&node, [&](onnx::GraphProto* sub) { graph(sub); });
      if (!is_default_domain(node.domain())) {
        *out.Add() = node;
        continue;
      }
      for (auto& n : adapt(node)) *out.Add() = std::move(n);
    }
    g->mutable_node()->Swap(&out);
  }

  std::vector<std::string> notes() const {
    std::vector<std::string> lines;
    for (const auto& [what, count] : rewrites_) lines.push_back(what + " (" + std::to_string(count) + " node(s))");
    return lines;
  }

 private:
  using Nodes = std::vector<onnx::NodeProto>;

  Nodes adapt(onnx::NodeProto node) {
    const std::string op = node.op_type();
    auto no_adapter = kNoAdapter.find(op);
    if (no_adapter != kNoAdapter.end() && from_ < no_adapter->second)
      refuse(node, "its definition changed in opset " + std::to_string(no_adapter->second) +
                       " and tetra has no adapter for it");
    auto axes = kAxesBecameInput.find(op);
    if (axes != kAxesBecameInput.end() && from_ < axes->second) return {attrs_to_inputs(node, {"axes"}, DType::Int64)};
    if (op == "Clip" && from_ < 11) return {clip(node)};
    if ((op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") && from_ < 13) return softmax(node);
    if (op == "Split") return {split(node)};
    if (op == "Pad" && from_ < 11) return {pad(node)};
    if (op == "Slice" && from_ < 10) return {attrs_to_inputs(node, {"starts", "ends", "axes"}, DType::Int64)};
    if (op == "Upsample") return {upsample(node)};
    if (op == "Resize" && from_ < 13) return {resize(node)};
    if (op == "BatchNormalization") return {batch_norm(node)};
    if (op == "Dropout" && from_ < 12) return {dropout(node)};
    return {node};
  }

  [[noreturn]] void refuse(const onnx::NodeProto& node, const std::string& why) {
    fail(ErrorKind::Unsupported, label(node) + " (ai.onnx opset " + std::to_string(from_) +
                                     ") cannot be converted to opset " + std::to_string(target_) + ": " + why);
  }

  void note(const std::string& what) { ++rewrites_[what]; }

  std::string constant(const std::string& base, const Tensor& value) {
    std::string name = names_.fresh(base);
    tensor_to_proto(value, name, main_->add_initializer());
    return name;
  }
  static void set_input(onnx::NodeProto& node, int index, const std::string& name) {
    while (node.input_size() <= index) node.add_input("");
    node.set_input(index, name);
  }
  bool used(const std::string& value) const {
    auto it = uses_.find(value);
    return !value.empty() && it != uses_.end() && it->second > 0;
  }

  // Attributes `attrs[i]` become input i + 1 (omitted when the attribute is absent).
  onnx::NodeProto attrs_to_inputs(onnx::NodeProto node, const std::vector<std::string>& attrs, DType dtype) {
    bool moved = false;
    for (size_t i = 0; i < attrs.size(); ++i) {
      const auto* a = find_attr(node, attrs[i]);
      if (!a) continue;
      std::vector<int64_t> ints(a->ints().begin(), a->ints().end());
      set_input(node, static_cast<int>(i) + 1,
                constant(node.name() + "_" + attrs[i], Tensor::from_ints(dtype, {a->ints_size()}, ints)));
      remove_attr(&node, attrs[i]);
      moved = true;
    }
    if (moved) note(node.op_type() + ": attributes became inputs");
    return node;
  }

  // Clip 6: min/max attributes (float) -> inputs of the input's type.
  onnx::NodeProto clip(onnx::NodeProto node) {
    DType dtype = types_.dtype(node.input(0));
    for (int i : {1, 2}) {
      const char* name = i == 1 ? "min" : "max";
      const auto* a = find_attr(node, name);
      if (!a) continue;
      set_input(node, i, constant(node.name() + "_" + name, Tensor::scalar(dtype, a->f())));
      remove_attr(&node, name);
    }
    note("Clip: min/max became inputs");
    return node;
  }

  // Before opset 13 the softmax family flattened the input to 2-D at `axis` ([d0*..*d(axis-1),
  // d(axis)*..]) and normalised each row. Over the last axis that is the new single-axis op;
  // elsewhere (or when the rank is unknown) Flatten -> op -> Reshape back keeps the old meaning.
  Nodes softmax(onnx::NodeProto node) {
    const std::string x = node.input(0), y = node.output(0);
    int64_t axis = attr_int(node, "axis", 1), rank = types_.rank(x);
    if (rank >= 0 && (axis == -1 || axis == rank - 1)) {
      set_attr(&node, "axis", int64_t(-1));
      note(node.op_type() + ": over the last axis, unchanged");
      return {node};
    }
    onnx::NodeProto flatten, shape, reshape;
    const std::string flat = names_.fresh(y + "_2d_in"), flat_out = names_.fresh(y + "_2d"),
                      dims = names_.fresh(y + "_shape");
    flatten.set_op_type("Flatten");
    flatten.set_name(names_.fresh(node.name() + "_flatten"));
    flatten.add_input(x);
    flatten.add_output(flat);
    set_attr(&flatten, "axis", axis);
    shape.set_op_type("Shape");
    shape.set_name(names_.fresh(node.name() + "_shape"));
    shape.add_input(x);
    shape.add_output(dims);
    node.set_input(0, flat);
    node.set_output(0, flat_out);
    set_attr(&node, "axis", int64_t(1));
    reshape.set_op_type("Reshape");
    reshape.set_name(names_.fresh(node.name() + "_reshape"));
    reshape.add_input(flat_out);
    reshape.add_input(dims);
    reshape.add_output(y);
    note(node.op_type() + ": 2-D flattening kept with Flatten/Reshape");
    return {flatten, node, shape, reshape};
  }

  // Split: `split` attribute -> input (13); an even split says into how many outputs (18).
  onnx::NodeProto split(onnx::NodeProto node) {
    if (from_ < 13) node = attrs_to_inputs(node, {"split"}, DType::Int64);
    if (from_ < 18 && (node.input_size() < 2 || node.input(1).empty()) && !find_attr(node, "num_outputs")) {
      set_attr(&node, "num_outputs", int64_t(node.output_size()));
      note("Split: num_outputs for an even split");
    }
    return node;
  }

  // Pad 2: pads and value attributes -> inputs.
  onnx::NodeProto pad(onnx::NodeProto node) {
    const auto* pads = find_attr(node, "pads");
    check(pads != nullptr, ErrorKind::Invalid, label(node) + " has no 'pads' attribute");
    std::vector<int64_t> p(pads->ints().begin(), pads->ints().end());
    set_input(node, 1, constant(node.name() + "_pads", Tensor::from_ints(DType::Int64, {pads->ints_size()}, p)));
    remove_attr(&node, "pads");
    if (const auto* value = find_attr(node, "value")) {
      if (value->f() != 0.0f)
        set_input(node, 2, constant(node.name() + "_value", Tensor::scalar(types_.dtype(node.input(0)), value->f())));
      remove_attr(&node, "value");
    }
    note("Pad: pads/value became inputs");
    return node;
  }

  // Upsample (7: scales attribute; 9: scales input; removed in 10) -> Resize, whose "asymmetric"
  // coordinates with floor rounding are Upsample's arithmetic.
  onnx::NodeProto upsample(onnx::NodeProto node) {
    std::string scales = node.input_size() > 1 ? node.input(1) : "";
    if (const auto* a = find_attr(node, "scales")) {
      std::vector<double> s(a->floats().begin(), a->floats().end());
      scales = constant(node.name() + "_scales", Tensor::from_doubles(DType::Float32, {a->floats_size()}, s));
      remove_attr(&node, "scales");
    }
    check(!scales.empty(), ErrorKind::Invalid, label(node) + " has no scales");
    const std::string x = node.input(0);
    const bool nearest = attr_string(node, "mode", "nearest") == "nearest";
    node.set_op_type("Resize");
    node.clear_input();
    node.add_input(x);
    node.add_input("");  // roi
    node.add_input(scales);
    if (!nearest) set_attr(&node, "mode", std::string("linear"));  // "bilinear" in opset 7
    set_attr(&node, "coordinate_transformation_mode", std::string("asymmetric"));
    if (nearest) set_attr(&node, "nearest_mode", std::string("floor"));
    note("Upsample: became Resize");
    return node;
  }

  // Resize 10 had only (X, scales) and no coordinate mode: ONNX Runtime computes it with
  // asymmetric coordinates and, for nearest, floor when enlarging and ceil when shrinking.
  onnx::NodeProto resize(onnx::NodeProto node) {
    if (from_ < 11) {
      const std::string scales = node.input(1);
      node.set_input(1, "");
      set_input(node, 2, scales);
      set_attr(&node, "coordinate_transformation_mode", std::string("asymmetric"));
      if (attr_string(node, "mode", "nearest") == "nearest")
        set_attr(&node, "nearest_mode", std::string(shrinks(node, scales) ? "ceil" : "floor"));
      note("Resize 10: roi input and the coordinate mode it implied");
    } else if (attr_string(node, "coordinate_transformation_mode", "half_pixel") == "tf_half_pixel_for_nn") {
      refuse(node, "coordinate_transformation_mode 'tf_half_pixel_for_nn' was removed in opset 13");
    }
    return node;
  }

  // Whether constant `scales` shrink every resized axis (refused when they shrink some and enlarge others).
  bool shrinks(const onnx::NodeProto& node, const std::string& scales) {
    for (const auto& t : main_->initializer()) {
      if (t.name() != scales) continue;
      bool down = false, up = false;
      Tensor s = tensor_from_proto(t);
      for (int64_t i = 0; i < s.size(); ++i) {
        down = down || s.get(i) < 1;
        up = up || s.get(i) > 1;
      }
      if (down && up) refuse(node, "nearest resizing that shrinks some axes and enlarges others has no opset 11 form");
      return down;
    }
    return false;  // scales computed at run time: enlarging, as nearly always
  }

  // BatchNormalization: `spatial` went in 9; the training outputs changed in 14.
  onnx::NodeProto batch_norm(onnx::NodeProto node) {
    if (from_ < 9 && find_attr(node, "spatial")) {
      if (attr_int(node, "spatial", 1) == 0) refuse(node, "spatial=0 (per-activation statistics) was removed in opset 9");
      remove_attr(&node, "spatial");
      note("BatchNormalization: spatial attribute removed");
    }
    if (from_ < 14 && node.output_size() > 1) {
      for (int i = 1; i < node.output_size(); ++i)
        if (used(node.output(i))) refuse(node, "its training-mode output '" + node.output(i) + "' changed meaning in opset 14");
      while (node.output_size() > 1) node.mutable_output()->RemoveLast();
      note("BatchNormalization: unused training outputs dropped");
    }
    return node;
  }

  // Dropout: `ratio` attribute -> input (12); the mask changed type in 10.
  onnx::NodeProto dropout(onnx::NodeProto node) {
    if (node.output_size() > 1) {
      if (from_ < 10 && used(node.output(1))) refuse(node, "its mask output became bool in opset 10");
      if (!used(node.output(1))) node.mutable_output()->RemoveLast();
    }
    if (const auto* ratio = find_attr(node, "ratio")) {
      set_input(node, 1, constant(node.name() + "_ratio", Tensor::scalar(DType::Float32, ratio->f())));
      remove_attr(&node, "ratio");
    }
    note("Dropout: ratio became an input");
    return node;
  }

  onnx::GraphProto* main_;
  int64_t from_, target_;
  const ValueTypes& types_;
  NameSet names_;
  std::map<std::string, int> uses_;
  std::map<std::string, int> rewrites_;
};

}  // namespace

std::vector<std::string> upgrade_opset(onnx::ModelProto& model, int64_t target, const std::string& base_dir) {
  const int64_t from = default_opset(model);
  if (from >= target) return {};
  check(from >= 7, ErrorKind::Unsupported, "ai.onnx opset " + std::to_string(from) + " is too old to upgrade (tetra reads opset 7 and later)");
  ValueTypes types(model, base_dir);
  onnx::ModelProto upgraded = model;
  Upgrader upgrader(upgraded, from, target, types);
  upgrader.graph(upgraded.mutable_graph());
  set_opset(&upgraded, "", target);
  model.Swap(&upgraded);
  std::vector<std::string> notes = {"raised ai.onnx opset from " + std::to_string(from) + " to " + std::to_string(target)};
  for (const std::string& line : upgrader.notes()) notes.push_back("  " + line);
  return notes;
}

}  // namespace tetra::quantize
