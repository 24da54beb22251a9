#include "runtime/reference_evaluator.h"

#include <set>

#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/op_registry.h"

namespace tetra {
namespace {

// Values up to this many elements are folded when all of a node's inputs are constants, so that
// shape arithmetic (Shape -> Gather -> Concat -> Reshape) yields known shapes.
constexpr int64_t kFoldLimit = 1 << 16;

}  // namespace

const OpDef& op_for(const Node& n) {
  const OpDef* def = OpRegistry::get().find(n.domain, n.op_type);
  if (!def) fail(ErrorKind::Unsupported, n.label() + ": operator is not supported");
  return *def;
}

namespace {

ValueInfo info_of(const std::string& name, const Tensor& t) {
  ValueInfo v;
  v.name = name;
  v.dtype = t.dtype();
  v.shape = to_symbolic(t.shape());
  v.has_shape = true;
  return v;
}

// Binds a graph input's declared type to a concrete shape, checking what the model declares.
ValueInfo bind_input(const ValueInfo& declared, const Shape& shape) {
  ValueInfo v = declared;
  if (declared.has_shape) {
    check(declared.shape.size() == shape.size(), ErrorKind::Invalid,
          "input '" + declared.name + "' has rank " + std::to_string(declared.shape.size()) + " (shape " +
              shape_str(declared.shape) + "), got shape " + shape_str(shape));
    for (size_t d = 0; d < shape.size(); ++d)
      check(!declared.shape[d].known() || declared.shape[d].value == shape[d], ErrorKind::Invalid,
            "input '" + declared.name + "' expects shape " + shape_str(declared.shape) + ", got " + shape_str(shape));
  }
  v.shape = to_symbolic(shape);
  v.has_shape = true;
  return v;
}

}  // namespace

void infer_shapes(Graph& graph, const std::map<std::string, Shape>& input_shapes) {
  graph.values.clear();
  std::map<std::string, Tensor> constants = graph.initializers;
  for (const auto& [name, t] : graph.initializers) graph.values[name] = info_of(name, t);
  for (const auto& [name, shape] : input_shapes) {
    bool found = false;
    for (const ValueInfo& in : graph.inputs) found = found || in.name == name;
    check(found, ErrorKind::Invalid, "'" + name + "' is not an input of the model");
  }
  for (ValueInfo& in : graph.inputs) {
    auto bound = input_shapes.find(in.name);
    graph.values[in.name] = bound == input_shapes.end() ? in : bind_input(in, bound->second);
  }
  for (const Node& n : graph.nodes) {
    const OpDef& def = op_for(n);
    InferContext ctx{n, {}, {}};
    bool all_constant = true;
    for (const std::string& name : n.inputs) {
      if (name.empty()) {
        ctx.inputs.push_back(nullptr);
        ctx.constants.push_back(nullptr);
        continue;
      }
      auto v = graph.values.find(name);
      if (v == graph.values.end()) fail(ErrorKind::Invalid, n.label() + ": input '" + name + "' is not defined");
      ctx.inputs.push_back(&v->second);
      auto c = constants.find(name);
      ctx.constants.push_back(c == constants.end() ? nullptr : &c->second);
      all_constant = all_constant && c != constants.end();
    }
    std::vector<ValueInfo> outs = def.infer(ctx);
    for (const ValueInfo& o : outs) {  // refused here, before any run allocates it
      if (!o.has_shape || !fully_known(o.shape)) continue;
      try {
        checked_element_count(o.dtype, to_shape(o.shape));
      } catch (const Error& e) {
        fail(e.kind(), n.label() + ": its output " + e.what());
      }
    }
    bool small = true;
    for (const ValueInfo& o : outs) small = small && o.has_shape && fully_known(o.shape) && num_elements(to_shape(o.shape)) <= kFoldLimit;
    if (all_constant && small && !n.weight) {
      std::vector<Tensor> in;
      for (const std::string& name : n.inputs) in.push_back(name.empty() ? Tensor() : constants.at(name));
      std::vector<Tensor> folded = def.compute(n, in);
      for (size_t i = 0; i < n.outputs.size() && i < folded.size(); ++i)
        if (!n.outputs[i].empty()) constants[n.outputs[i]] = folded[i];
    }
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      if (i >= outs.size()) fail(ErrorKind::Invalid, n.label() + ": produces no output " + std::to_string(i));
      outs[i].name = n.outputs[i];
      graph.values[n.outputs[i]] = outs[i];
    }
  }
  for (ValueInfo& out : graph.outputs) {
    const ValueInfo* inferred = graph.find_value(out.name);
    if (!inferred) continue;
    check(out.dtype == DType::Undefined || inferred->dtype == out.dtype, ErrorKind::Invalid,
          "graph output '" + out.name + "' is declared " + dtype_name(out.dtype) + " but computes " +
              dtype_name(inferred->dtype));
    if (inferred->has_shape && (!out.has_shape || fully_known(inferred->shape))) {
      out.shape = inferred->shape;
      out.has_shape = true;
    }
    out.dtype = inferred->dtype;
  }
}

std::vector<std::string> unsupported_nodes(const Graph& graph) {
  std::vector<std::string> out;
  for (const Node& n : graph.nodes)
    if (!OpRegistry::get().find(n.domain, n.op_type)) out.push_back(n.label());
  return out;
}

Graph bind_inputs(const Graph& graph, const TensorMap& inputs) {
  std::map<std::string, Shape> shapes;
  for (const ValueInfo& in : graph.inputs) {
    auto it = inputs.find(in.name);
    check(it != inputs.end(), ErrorKind::Invalid, "input '" + in.name + "' was not given");
    check(it->second.dtype() == in.dtype, ErrorKind::Invalid,
          "input '" + in.name + "' must be " + dtype_name(in.dtype) + ", got " + dtype_name(it->second.dtype()));
    shapes[in.name] = it->second.shape();
  }
  Graph bound = graph;
  infer_shapes(bound, shapes);
  return bound;
}

TensorMap run_reference(const Graph& graph, const TensorMap& inputs) {
  return Executor(graph, std::shared_ptr<KernelSource>()).run(inputs);
}

}  // namespace tetra
