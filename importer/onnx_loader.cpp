#include "importer/onnx_loader.h"

#include <onnx/onnx_pb.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <queue>
#include <set>
#include <unordered_map>
#include <sstream>

#include "importer/error.h"
#include "importer/int4_patterns.h"
#include "runtime/op_registry.h"

namespace tetra {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMinOpset = 7;
constexpr int64_t kMaxOpset = 25;
// More nodes than any real model has: a bound on the work and memory a file can ask for.
constexpr size_t kMaxNodes = 1'000'000;

std::string read_file_bytes(const std::string& path, const std::string& what) {
  std::error_code ec;
  check(fs::is_regular_file(path, ec), ErrorKind::Io, what + " '" + path + "' does not exist or is not a file");
  std::ifstream in(path, std::ios::binary);
  check(in.good(), ErrorKind::Io, "cannot open " + what + " '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Reads `length` bytes at `offset` of an external data file, which must lie inside `base_dir`.
std::string read_external(const onnx::TensorProto& proto, const std::string& base_dir, int64_t expected) {
  const std::string& tname = proto.name();
  std::string location;
  int64_t offset = 0, length = -1;
  // A whole decimal number: "0x10" or "16 bytes" is not 16 (nor 0).
  auto number = [&](const std::string& key, const std::string& text) {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    check(!text.empty() && ec == std::errc() && end == text.data() + text.size(), ErrorKind::Malformed,
          "tensor '" + tname + "': external data field '" + key + "' is not a decimal number: '" + text + "'");
    return value;
  };
  for (const auto& entry : proto.external_data()) {
    if (entry.key() == "location") location = entry.value();
    else if (entry.key() == "offset") offset = number(entry.key(), entry.value());
    else if (entry.key() == "length") length = number(entry.key(), entry.value());
  }
  check(!base_dir.empty(), ErrorKind::Invalid, "tensor '" + tname + "' uses external data, which is not allowed here");
  check(!location.empty(), ErrorKind::Malformed, "tensor '" + tname + "': external data has no location");
  check(fs::path(location).is_relative(), ErrorKind::Invalid,
        "tensor '" + tname + "': external data path '" + location + "' must be relative to the model's folder");
  // A path the system cannot resolve (too long, a loop of links) is the model's fault, not ours.
  std::error_code ec;
  fs::path base = fs::weakly_canonical(fs::path(base_dir), ec);
  fs::path file = ec ? fs::path() : fs::weakly_canonical(base / location, ec);
  check(!ec, ErrorKind::Invalid,
        "tensor '" + tname + "': external data path '" + location + "' cannot be resolved: " + ec.message());
  auto [b, f] = std::mismatch(base.begin(), base.end(), file.begin(), file.end());
  check(b == base.end(), ErrorKind::Invalid,
        "tensor '" + tname + "': external data path '" + location + "' escapes the model's folder");
  check(fs::is_regular_file(file, ec), ErrorKind::Io,
        "tensor '" + tname + "': external data file '" + location + "' is missing");
  int64_t file_size = static_cast<int64_t>(fs::file_size(file, ec));
  if (length < 0) length = expected;
  check(offset >= 0 && length == expected, ErrorKind::Malformed,
        "tensor '" + tname + "': external data length " + std::to_string(length) + " does not match the " +
            std::to_string(expected) + " bytes its type and shape need");
  check(offset <= file_size && length <= file_size - offset, ErrorKind::Malformed,
        "tensor '" + tname + "': external data [" + std::to_string(offset) + ", +" + std::to_string(length) +
            ") lies outside '" + location + "' (" + std::to_string(file_size) + " bytes)");
  std::ifstream in(file, std::ios::binary);
  std::string bytes(length, '\0');
  in.seekg(offset);
  in.read(bytes.data(), length);
  check(in.gcount() == length, ErrorKind::Io, "tensor '" + tname + "': short read from '" + location + "'");
  return bytes;
}

Attribute convert_attribute(const onnx::AttributeProto& a, const std::string& node_label) {
  Attribute out;
  using A = onnx::AttributeProto;
  switch (a.type()) {
    case A::INT: out.kind = Attribute::Kind::Int; out.i = a.i(); break;
    case A::FLOAT: out.kind = Attribute::Kind::Float; out.f = a.f(); break;
    case A::STRING: out.kind = Attribute::Kind::String; out.s = a.s(); break;
    case A::INTS: out.kind = Attribute::Kind::Ints; out.ints.assign(a.ints().begin(), a.ints().end()); break;
    case A::FLOATS: out.kind = Attribute::Kind::Floats; out.floats.assign(a.floats().begin(), a.floats().end()); break;
    case A::STRINGS: out.kind = Attribute::Kind::Strings; out.strings.assign(a.strings().begin(), a.strings().end()); break;
    case A::TENSOR: out.kind = Attribute::Kind::Tensor; out.t = tensor_from_proto(a.t()); break;
    default:
      fail(ErrorKind::Unsupported, node_label + ": attribute '" + a.name() + "' has an unsupported kind (" +
                                       std::to_string(a.type()) + ")");
  }
  return out;
}

ValueInfo convert_value_info(const onnx::ValueInfoProto& v) {
  ValueInfo info;
  info.name = v.name();
  check(v.type().has_tensor_type(), ErrorKind::Unsupported, "value '" + v.name() + "' is not a tensor");
  const auto& tt = v.type().tensor_type();
  info.dtype = dtype_from_onnx(tt.elem_type());
  check(dtype_supported(info.dtype), ErrorKind::Unsupported,
        "value '" + v.name() + "' has unsupported element type " + std::to_string(tt.elem_type()));
  info.has_shape = tt.has_shape();
  for (const auto& d : tt.shape().dim()) {
    Dim dim;
    if (d.has_dim_value()) dim.value = d.dim_value();
    else dim.symbol = d.dim_param();
    check(dim.value >= -1, ErrorKind::Malformed, "value '" + v.name() + "' has a negative dimension");
    info.shape.push_back(dim);
  }
  return info;
}

// Orders nodes so that every input is produced before use: Kahn's algorithm, O((nodes + edges) log
// nodes), the log from taking ready nodes in file order (a graph already in order keeps it). Fails
// naming the node whose input nobody produces, the value produced twice, or a node on a cycle.
std::vector<Node> topological_order(std::vector<Node> nodes, const std::set<std::string>& available_at_start) {
  check(nodes.size() <= kMaxNodes, ErrorKind::Unsupported,
        "the graph has " + std::to_string(nodes.size()) + " nodes; tetra loads at most " + std::to_string(kMaxNodes));
  // Messages are built only on failure: these loops run for every edge.
  std::unordered_map<std::string, size_t> producer;
  producer.reserve(nodes.size());
  for (size_t k = 0; k < nodes.size(); ++k)
    for (const auto& o : nodes[k].outputs) {
      if (o.empty()) continue;
      if (available_at_start.count(o))
        fail(ErrorKind::Invalid, nodes[k].label() + ": output '" + o + "' is already a graph input or an initializer");
      auto [it, added] = producer.emplace(o, k);
      if (!added)
        fail(ErrorKind::Invalid, nodes[k].label() + ": output '" + o + "' is also produced by " + nodes[it->second].label());
    }
  // Each edge as (producer, consumer), then the consumers of node p as consumers[first[p], first[p + 1]).
  std::vector<std::pair<size_t, size_t>> edges;
  std::vector<size_t> waiting(nodes.size(), 0);  // inputs not produced yet, per node
  for (size_t k = 0; k < nodes.size(); ++k)
    for (const auto& i : nodes[k].inputs) {
      if (i.empty() || available_at_start.count(i)) continue;
      auto p = producer.find(i);
      if (p == producer.end())
        fail(ErrorKind::Invalid,
             nodes[k].label() + ": input '" + i + "' is not a graph input, an initializer or any node's output");
      edges.emplace_back(p->second, k);
      waiting[k]++;
    }
  std::vector<size_t> first(nodes.size() + 1, 0), consumers(edges.size());
  for (const auto& [p, c] : edges) first[p + 1]++;
  for (size_t k = 0; k < nodes.size(); ++k) first[k + 1] += first[k];
  std::vector<size_t> fill(first.begin(), first.end() - 1);
  for (const auto& [p, c] : edges) consumers[fill[p]++] = c;
  // Ready nodes leave in their original order, so a graph already sorted keeps its order.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<size_t>> ready;
  for (size_t k = 0; k < nodes.size(); ++k)
    if (waiting[k] == 0) ready.push(k);
  std::vector<size_t> order;
  while (!ready.empty()) {
    size_t k = ready.top();
    ready.pop();
    order.push_back(k);
    for (size_t e = first[k]; e < first[k + 1]; ++e)
      if (--waiting[consumers[e]] == 0) ready.push(consumers[e]);
  }
  for (size_t k = 0; k < nodes.size(); ++k)
    if (waiting[k] != 0) fail(ErrorKind::Invalid, nodes[k].label() + ": is part of a cycle in the graph");
  std::vector<Node> ordered;
  ordered.reserve(nodes.size());
  for (size_t k : order) ordered.push_back(std::move(nodes[k]));
  return ordered;
}

}  // namespace

onnx::ModelProto parse_model(const std::string& bytes, const std::string& what) {
  onnx::ModelProto model;
  check(model.ParseFromString(bytes), ErrorKind::Malformed,
        what + " is not a valid ONNX model (truncated or corrupt protobuf)");
  check(model.has_graph(), ErrorKind::Malformed, what + " has no graph");
  return model;
}

onnx::ModelProto read_model_file(const std::string& path) {
  return parse_model(read_file_bytes(path, "model"), "'" + path + "'");
}

Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir) {
  const std::string label = "tensor '" + proto.name() + "'";
  DType dtype = dtype_from_onnx(proto.data_type());
  check(dtype_supported(dtype), ErrorKind::Unsupported,
        label + " has unsupported element type " +
            (dtype == DType::Undefined ? std::to_string(proto.data_type()) : dtype_name(dtype)));
  Shape shape(proto.dims().begin(), proto.dims().end());
  for (int64_t d : shape) check(d >= 0, ErrorKind::Malformed, label + " has a negative dimension");
  int64_t count = 0;
  try {
    count = checked_element_count(dtype, shape);
  } catch (const Error& e) {
    fail(ErrorKind::Malformed, label + ": " + e.what());
  }
  const int64_t nbytes = storage_bytes(dtype, count);
  auto adopt = [&](const std::string& raw, const char* field) {
    check(static_cast<int64_t>(raw.size()) == nbytes, ErrorKind::Malformed,
          label + ": " + field + " holds " + std::to_string(raw.size()) + " bytes but " + dtype_name(dtype) +
              shape_str(shape) + " needs " + std::to_string(nbytes));
    return Tensor(dtype, shape, std::vector<uint8_t>(raw.begin(), raw.end()));
  };
  if (proto.data_location() == onnx::TensorProto::EXTERNAL)
    return adopt(read_external(proto, base_dir, nbytes), "external data");
  if (proto.has_raw_data()) return adopt(proto.raw_data(), "raw_data");

  // Typed fields: the entry count must match before the tensor is allocated.
  auto expect_count = [&](int64_t have, int64_t want, const char* field) {
    check(have == want, ErrorKind::Malformed,
          label + ": " + field + " holds " + std::to_string(have) + " entries but " + dtype_name(dtype) +
              shape_str(shape) + " needs " + std::to_string(want));
  };
  switch (dtype) {
    case DType::Float32: expect_count(proto.float_data_size(), count, "float_data"); break;
    case DType::Int64: expect_count(proto.int64_data_size(), count, "int64_data"); break;
    case DType::Int4: case DType::UInt4: expect_count(proto.int32_data_size(), nbytes, "int32_data"); break;
    default: expect_count(proto.int32_data_size(), count, "int32_data"); break;
  }
  Tensor t(dtype, shape);
  switch (dtype) {
    case DType::Float32:
      for (int64_t i = 0; i < count; ++i) t.mutable_data<float>()[i] = proto.float_data(i);
      break;
    case DType::Int64:
      for (int64_t i = 0; i < count; ++i) t.mutable_data<int64_t>()[i] = proto.int64_data(i);
      break;
    case DType::Int4: case DType::UInt4:
      // One packed byte per entry; writers may sign-extend it, so keep the low 8 bits.
      for (int64_t i = 0; i < nbytes; ++i) t.mutable_bytes()[i] = static_cast<uint8_t>(proto.int32_data(i) & 0xFF);
      if (count % 2) t.mutable_bytes()[nbytes - 1] &= 0x0F;  // clear the pad nibble
      break;
    case DType::Float16:
      for (int64_t i = 0; i < count; ++i) t.mutable_data<uint16_t>()[i] = static_cast<uint16_t>(proto.int32_data(i));
      break;
    default:  // int8, uint8, int32, bool travel in int32_data one element per entry
      for (int64_t i = 0; i < count; ++i) t.set_int(i, proto.int32_data(i));
      break;
  }
  return t;
}

void tensor_to_proto(const Tensor& tensor, const std::string& name, onnx::TensorProto* proto) {
  proto->Clear();
  proto->set_name(name);
  proto->set_data_type(static_cast<int32_t>(tensor.dtype()));
  for (int64_t d : tensor.shape()) proto->add_dims(d);
  proto->set_raw_data(std::string(reinterpret_cast<const char*>(tensor.bytes()), tensor.byte_size()));
}

Graph import_model(const onnx::ModelProto& model, const std::string& base_dir, const LoadOptions& options) {
  Graph g;
  g.ir_version = model.ir_version();
  for (const auto& op : model.opset_import()) {
    std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    g.opsets[domain] = op.version();
  }
  if (!g.opsets.count("")) g.opsets[""] = g.ir_version >= 3 ? 0 : 1;  // opset must be declared from IR 3 on
  int64_t onnx_opset = g.opsets[""];
  check(onnx_opset >= kMinOpset && onnx_opset <= kMaxOpset, ErrorKind::Unsupported,
        "the model imports ai.onnx opset " + std::to_string(onnx_opset) + "; tetra supports opsets " +
            std::to_string(kMinOpset) + " to " + std::to_string(kMaxOpset));

  const onnx::GraphProto& graph = model.graph();
  g.name = graph.name();
  check(graph.sparse_initializer_size() == 0, ErrorKind::Unsupported, "sparse initializers are not supported");
  for (const auto& init : graph.initializer()) {
    check(!init.name().empty(), ErrorKind::Malformed, "an initializer has no name");
    check(!g.initializers.count(init.name()), ErrorKind::Malformed, "initializer '" + init.name() + "' is defined twice");
    g.initializers[init.name()] = tensor_from_proto(init, base_dir);
  }
  std::set<std::string> available;
  for (const auto& [name, t] : g.initializers) available.insert(name);
  for (const auto& in : graph.input()) {
    if (g.initializers.count(in.name())) continue;  // an initializer with a default value: a constant here
    ValueInfo info = convert_value_info(in);
    check(!available.count(info.name), ErrorKind::Invalid, "graph input '" + info.name + "' is listed twice");
    g.inputs.push_back(info);
    available.insert(info.name);
  }
  std::set<std::string> output_names;
  for (const auto& out : graph.output()) {
    check(output_names.insert(out.name()).second, ErrorKind::Invalid, "graph output '" + out.name() + "' is listed twice");
    g.outputs.push_back(convert_value_info(out));
  }

  std::vector<Node> nodes;
  nodes.reserve(size_t(graph.node_size()));
  int unnamed = 0;
  for (const auto& np : graph.node()) {
    Node n;
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.name = np.name().empty() ? n.op_type + "_" + std::to_string(unnamed++) : np.name();
    auto opset = g.opsets.find(n.domain);
    n.opset = opset == g.opsets.end() ? 0 : opset->second;
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute()) n.attrs[a.name()] = convert_attribute(a, n.label());
    if (opset == g.opsets.end())
      fail(ErrorKind::Invalid, n.label() + ": its domain '" + n.domain + "' is not in the model's opset imports");
    check_arity(n);
    nodes.push_back(std::move(n));
  }
  g.nodes = topological_order(std::move(nodes), available);

  // A Constant node with a tensor `value` is an initializer by another name.
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (Node& n : g.nodes) {
    if (n.domain.empty() && n.op_type == "Constant" && n.has_attr("value") && n.outputs.size() == 1) {
      g.initializers[n.outputs[0]] = n.attr_tensor("value");
    } else {
      kept.push_back(std::move(n));
    }
  }
  g.nodes = std::move(kept);

  std::set<std::string> undefined;  // graph outputs nothing has defined yet (there are few)
  for (const ValueInfo& out : g.outputs)
    if (!available.count(out.name) && !g.initializers.count(out.name)) undefined.insert(out.name);
  for (const Node& n : g.nodes)
    for (const std::string& o : n.outputs) undefined.erase(o);
  check(undefined.empty(), ErrorKind::Invalid,
        "graph output '" + (undefined.empty() ? "" : *undefined.begin()) + "' is produced by no node");

  if (options.fuse_int4) fuse_int4_weights(g);
  if (options.fuse_float) fuse_float_weights(g);
  return g;
}

Graph load_onnx(const std::string& path, const LoadOptions& options) {
  onnx::ModelProto model = read_model_file(path);
  std::string base = fs::path(path).parent_path().string();
  return import_model(model, base.empty() ? "." : base, options);
}

}  // namespace tetra
