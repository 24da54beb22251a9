#include "runtime/aot/gpu_model_job.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>

#include "dsl/core/kernel_calls.h"
#include "dsl/gpu/code_object.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"
#include "importer/error.h"
#include "runtime/epilogue.h"
#include "runtime/halide_backend.h"
#include "runtime/halide_kernel.h"
#include "runtime/ops/attention_layout.h"
#include "runtime/ops/conv_core.h"
#include "runtime/ops/pad.h"
#include "runtime/ops/resize.h"
#include "schedules/gpu/elementwise.h"
#include "schedules/qconv_templates.h"
#include "schedules/qmatmul_templates.h"

namespace tetra {

namespace {

namespace fs = std::filesystem;
using dsl::Failure;
using dsl::FailureKind;
using schedules::GpuKernels;

// Ops that only rename memory: their output is a view of their first input.
const std::set<std::string> kViewOps = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"};
// The elementwise op whose expression is its operand (a Clip without bounds): with the operand broadcast
// to a larger output, a broadcast copy.
const char* const kBroadcastCopy = "Clip:";

Tensor as_float32(const Tensor& t) {
  if (t.dtype() == DType::Float32) return t;
  Tensor f32(DType::Float32, t.shape());
  for (int64_t i = 0; i < t.size(); ++i) f32.set(i, t.get(i));
  return f32;
}

std::vector<int64_t> innermost_first(const Shape& shape) {
  std::vector<int64_t> e(shape.rbegin(), shape.rend());
  if (e.empty()) e.push_back(1);
  return e;
}

// `e` with every input named by a key of `rename` (or starting "KEY.") renamed.
dsl::IndexExpr renamed(dsl::IndexExpr e, const std::map<std::string, std::string>& buffers,
                       const std::string& scalars) {
  if (e.op == dsl::IndexExpr::Op::Input) {
    const std::string head = e.input.substr(0, e.input.find('.'));
    auto it = buffers.find(head);
    e.input = it != buffers.end() ? it->second + e.input.substr(head.size()) : scalars + e.input;
  }
  for (dsl::IndexExpr& o : e.operands) o = renamed(std::move(o), buffers, scalars);
  return e;
}

template <class T>
T value_or_fail(dsl::Result<T> r, const std::string& node) {
  check(r.ok(), ErrorKind::Unsupported, [&] { return node + ": " + r.failure().describe(); });
  return std::move(r).value();
}

class JobBuilder {
 public:
  JobBuilder(const Graph& graph, const dsl::TargetSpec& target, const ScheduleSource* schedules, fs::path dir)
      : graph_(graph), target_(target), schedules_(schedules), dir_(std::move(dir)) {}

  // The storage of a float graph value, which every kernel reads but a Gather's indices: made (and
  // filled) at its first use for constants.
  std::string storage_of(const std::string& value) {
    const std::string storage = any_storage_of(value);
    check(buffers_[storage]["type"] == "f32", ErrorKind::Unsupported,
          "value '" + value + "' is an integer: on the GPU, integers are only read as the indices of a Gather");
    return storage;
  }
  // The storage of a graph value of either type the device holds: float32, or int32 (indices).
  std::string any_storage_of(const std::string& value) {
    if (auto it = storage_.find(value); it != storage_.end()) return it->second;
    auto constant = graph_.initializers.find(value);
    check(constant != graph_.initializers.end(), ErrorKind::Invalid,
          "value '" + value + "' has no buffer on the device");
    if (constant->second.dtype() == DType::Bool) {  // a bool constant: a float mask
      Tensor mask(DType::Float32, constant->second.shape());
      for (int64_t i = 0; i < mask.size(); ++i) mask.mutable_data<float>()[i] = constant->second.get(i) != 0 ? 1 : 0;
      return storage_[value] = constant_storage("constant '" + value + "'", mask);
    }
    return storage_[value] = float_storage(value, constant->second);
  }
  // A graph input: float types as float32 storage; integers (token ids, indices) as int32, which
  // holds every index of a tensor the device can address.
  std::string input_storage(const std::string& value, const Tensor& t) {
    if (t.dtype() != DType::Int64 && t.dtype() != DType::Int32) return float_storage(value, t);
    Tensor narrow(DType::Int32, t.shape());
    for (int64_t i = 0; i < t.size(); ++i) {
      const int64_t v = t.get_int(i);
      check(v >= INT32_MIN && v <= INT32_MAX, ErrorKind::Invalid,
            "input '" + value + "' holds " + std::to_string(v) + ", beyond the int32 the GPU holds integers in");
      narrow.mutable_data<int32_t>()[i] = int32_t(v);
    }
    return constant_storage("input '" + value + "'", narrow);
  }

  // A new storage buffer of `count` float32 elements, or filled from `t` (float32) when given.
  std::string new_storage(int64_t count) {
    const std::string name = "s" + std::to_string(buffers_.size());
    buffers_[name] = {{"type", "f32"}, {"extents", {count}}};
    return name;
  }
  // Float16 values are held as float32 on the device: at least fp16's precision, and one set of kernels.
  std::string float_storage(const std::string& value, const Tensor& t) {
    check(t.dtype() == DType::Float32 || t.dtype() == DType::Float16, ErrorKind::Unsupported,
          "value '" + value + "' is " + dtype_name(t.dtype()) +
              ": the GPU path takes float32 and float16 activations and constants, and integer inputs");
    const std::string name = new_storage(t.size());
    const Tensor f32 = as_float32(t);
    write(name, f32.bytes(), size_t(f32.size()) * 4);
    return name;
  }
  // A storage holding a packed weight buffer as it is (from 0, its panel padding included), and a view of it
  // with the buffer's extents and strides.
  std::string weight_view(const std::string& what, const halide_buffer_t& b) {
    int64_t bytes = 0;
    const nlohmann::json entry = value_or_fail(dsl::gpu::job_buffer_entry(what, b, &bytes), what);
    const std::string storage = "s" + std::to_string(buffers_.size());
    buffers_[storage] = {{"type", entry["type"]}, {"extents", {bytes / b.type.bytes()}}};
    write(storage, b.host, size_t(bytes));
    weight_bytes_ += bytes;
    return view_of(storage, entry);
  }
  // A table the host computed once (float32 or int32).
  std::string constant_storage(const std::string& what, const Tensor& t) {
    check(t.dtype() == DType::Float32 || t.dtype() == DType::Int32, ErrorKind::Invalid, what + " is no 32-bit table");
    const std::string name = new_storage(t.size());
    buffers_[name]["type"] = t.dtype() == DType::Float32 ? "f32" : "i32";
    write(name, t.bytes(), size_t(t.size()) * 4);
    return name;
  }
  void set_value(const std::string& value, const std::string& storage) { storage_[value] = storage; }

  // A view of `storage` with these extents (innermost first) and its element type.
  std::string view(const std::string& storage, const std::vector<int64_t>& extents) {
    return view_of(storage, {{"extents", extents}});
  }
  // A view of `storage` of this shape ("extents", and "strides" unless dense) and its element type.
  std::string view_of(const std::string& storage, nlohmann::json shape) {
    const std::string name = "v" + std::to_string(views_++);
    shape["type"] = buffers_[storage]["type"];
    shape["alias"] = storage;
    buffers_[name] = std::move(shape);
    return name;
  }

  // The launches of `lowered`, each pipeline buffer bound to a view, each scalar to its value.
  void add(const std::string& node, const std::string& what, const GpuKernels& lowered,
           const std::map<std::string, std::string>& views, const nlohmann::json& scalars) {
    const std::string prefix = "k" + std::to_string(steps_++) + ".";
    for (auto it = scalars.begin(); it != scalars.end(); ++it) scalars_[prefix + it.key()] = *it;
    for (dsl::LaunchPlan plan : lowered.launches) {
      plan.node = node;
      for (dsl::KernelParam& p : plan.params) {
        if (p.is_buffer) {
          auto it = views.find(p.name);
          check(it != views.end(), ErrorKind::Invalid,
                node + ": its kernel " + plan.kernel + " reads a buffer '" + p.name + "' the GPU job does not bind");
          p.name = buffers_[it->second]["alias"].get<std::string>();
        } else {
          // A float scalar is the job's scalar of its name; an integer one an expression of the inputs.
          check(p.type != "f32" || scalars.contains(p.name), ErrorKind::Invalid,
                node + ": no value for the kernel's scalar " + p.name);
          if (p.type == "f32") p.name = prefix + p.name;
          p.value = renamed(p.value, views, prefix);
        }
      }
      for (int a = 0; a < 3; ++a) {
        plan.blocks[a] = renamed(plan.blocks[a], views, prefix);
        plan.threads[a] = renamed(plan.threads[a], views, prefix);
      }
      for (dsl::TouchedRange& t : plan.touched) {  // checked against the views the kernel reads through
        auto it = views.find(t.buffer);
        check(it != views.end(), ErrorKind::Invalid,
              node + ": its kernel " + plan.kernel + " touches a buffer '" + t.buffer + "' the GPU job does not bind");
        t.buffer = it->second;
        t.min = renamed(t.min, views, prefix);
        t.max = renamed(t.max, views, prefix);
      }
      launches_.push_back(plan.to_json());
    }
    kernels_.insert(kernels_.end(), lowered.kernels.begin(), lowered.kernels.end());
    described_.push_back({node, what});
  }

  std::string kernel_name() const { return "tetra_n" + std::to_string(steps_); }

  void write(const std::string& buffer, const void* data, size_t bytes) {
    std::ofstream out(dir_ / (buffer + ".bin"), std::ios::binary);
    out.write(static_cast<const char*>(data), std::streamsize(bytes));
    check(bool(out), ErrorKind::Io, "cannot write " + (dir_ / (buffer + ".bin")).string());
    buffers_[buffer]["file"] = buffer + ".bin";
  }

  const Graph& graph_;
  const dsl::TargetSpec target_;
  const ScheduleSource* schedules_;
  fs::path dir_;
  nlohmann::json buffers_ = nlohmann::json::object(), scalars_ = nlohmann::json::object();
  nlohmann::json launches_ = nlohmann::json::array();
  std::vector<dsl::gpu::DeviceKernel> kernels_;
  std::vector<std::pair<std::string, std::string>> described_;
  std::map<std::string, std::string> storage_;
  int views_ = 0, steps_ = 0;
  int64_t weight_bytes_ = 0;
};

Shape shape_of(const Graph& graph, const std::string& value) {
  std::optional<Shape> s = static_shape(graph, value);
  check(s.has_value(), ErrorKind::Invalid,
        "value '" + value + "' has no concrete shape (bind the model's input shapes)");
  return *s;
}

// An elementwise kernel of `key` over `operands` (values with these shapes, and their storages) into a new
// storage, which it returns with the output's shape.
// `broadcast_to` joins the operands' shapes in the broadcast without an operand of its own.
std::string elementwise(JobBuilder& b, const std::string& node, const std::string& key,
                        const std::vector<float>& floats, const std::vector<std::string>& operands,
                        const std::vector<Shape>& shapes, Shape* out_shape, const Shape& broadcast_to = {}) {
  std::vector<Shape> all = shapes;
  all.push_back(broadcast_to);
  size_t rank = 0;
  for (const Shape& s : all) rank = std::max(rank, s.size());
  Shape out(rank, 1);
  for (const Shape& s : all)
    for (size_t d = 0; d < s.size(); ++d) {
      int64_t& o = out[rank - s.size() + d];
      check(s[d] == o || s[d] == 1 || o == 1, ErrorKind::Invalid, node + ": operands do not broadcast");
      if (s[d] != 1) o = s[d];
    }
  const std::vector<int64_t> out_extents = innermost_first(out);
  std::vector<std::vector<bool>> broadcast;
  std::map<std::string, std::string> views;
  for (size_t k = 0; k < operands.size(); ++k) {
    Shape padded(rank - shapes[k].size(), 1);
    padded.insert(padded.end(), shapes[k].begin(), shapes[k].end());
    std::vector<int64_t> extents = innermost_first(padded);
    std::vector<bool> read;
    for (size_t d = 0; d < out_extents.size(); ++d) read.push_back(extents[d] == out_extents[d]);
    broadcast.push_back(read);
    views["in" + std::to_string(k)] = b.view(operands[k], extents);
  }
  GpuKernels lowered = value_or_fail(
      schedules::lower_gpu_elementwise(key, int(floats.size()), broadcast, b.target_, b.kernel_name()), node);
  const std::string y = b.new_storage(num_elements(out));
  views["out"] = b.view(y, out_extents);
  nlohmann::json scalars = nlohmann::json::object();
  for (size_t k = 0; k < floats.size(); ++k) scalars["p" + std::to_string(k)] = double(floats[k]);
  b.add(node, "gpu elementwise " + key, lowered, views, scalars);
  *out_shape = out;
  return y;
}

// The elementwise op key and float parameters of an activation or arithmetic node; nullopt when it has none.
std::optional<ActivationCall> elementwise_call(const Node& node, const Graph& graph) {
  if (std::optional<ActivationCall> call = activation_call(node, graph)) return call;
  if (!node.domain.empty()) return std::nullopt;
  auto it = elementwise_ops().find(node.op_type);
  if (it == elementwise_ops().end() || it->second.floats != 0) return std::nullopt;
  if (int(node.inputs.size()) != it->second.operands) return std::nullopt;
  return ActivationCall{node.op_type, {}};
}

// A node whose output is the storage `y` of shape `shape` gets its epilogue steps from `first`, each an
// elementwise kernel; returns the last storage.
std::string epilogue(JobBuilder& b, const Node& node, size_t first, std::string y, Shape shape) {
  for (size_t s = first; s < node.epilogue.size(); ++s) {
    const Node& step = node.epilogue[s];
    std::optional<ActivationCall> call = elementwise_call(step, b.graph_);
    check(call.has_value(), ErrorKind::Unsupported,
          node.label() + ": epilogue step " + step.label() + " has no GPU kernel yet");
    std::vector<std::string> operands = {y};
    std::vector<Shape> shapes = {shape};
    for (size_t i = 1; i < step.inputs.size(); ++i) {
      operands.push_back(b.storage_of(step.inputs[i]));
      shapes.push_back(shape_of(b.graph_, step.inputs[i]));
    }
    y = elementwise(b, node.label() + " (" + step.op_type + ")", call->key, call->params, operands, shapes, &shape);
  }
  return y;
}

// A GEMM's or conv's kernels under its tuning record, or the template default when there is none or the
// record's schedule does not lower for this workload (a nearest record can be of another shape).
template <class Default, class Lower>
GpuKernels lower_with_record(std::optional<ScheduleChoice> tuned, Default default_schedule, Lower lower,
                             const std::string& node, ScheduleChoice* choice) {
  std::string why;
  if (tuned) {
    dsl::Result<GpuKernels> lowered = lower(tuned->schedule);
    if (lowered.ok()) {
      *choice = *tuned;
      return std::move(lowered).value();
    }
    why = " (the " + tuned->source + " record does not lower: " + lowered.failure().describe() + ")";
  }
  *choice = ScheduleChoice{value_or_fail(default_schedule(), node), "default schedule" + why};
  return value_or_fail(lower(choice->schedule), node);
}

// A GEMM's or conv's packed weight (dsl::PackedInt4Buffers, dsl::ConvInt4Buffers) bound to its kernels'
// W_packed, W_scale and W_zero, and the buffer they write bound to a view of `y` of these extents.
template <class Packed>
void bind_weight_and_output(JobBuilder& b, const Node& node, const Packed& packed, const GpuKernels& lowered,
                            const std::string& y, const std::vector<int64_t>& y_extents,
                            std::map<std::string, std::string>& views) {
  views["W_packed"] = b.weight_view(node.label() + " W_packed", *packed.packed.raw_buffer());
  if (packed.scale.data()) views["W_scale"] = b.weight_view(node.label() + " W_scale", *packed.scale.raw_buffer());
  if (packed.zero.data()) views["W_zero"] = b.weight_view(node.label() + " W_zero", *packed.zero.raw_buffer());
  for (const dsl::LaunchPlan& plan : lowered.launches)
    for (const dsl::KernelParam& p : plan.params)
      if (p.is_buffer && p.write && !views.count(p.name)) views[p.name] = b.view(y, y_extents);
}

std::string copy(JobBuilder& b, const Node& node, const std::string& input, const Shape& in, const Shape& out,
                 const std::vector<int64_t>& source, const std::vector<int64_t>& start,
                 const std::vector<int64_t>& step, const std::string& what);

void add_qmatmul(JobBuilder& b, const Node& node) {
  std::optional<HalideGemm> gemm = halide_gemm_of(node, b.graph_);
  check(gemm.has_value(), ErrorKind::Unsupported, node.label() + ": its GEMM has no concrete shapes");
  std::string a = b.storage_of(node.input(0));
  if (node.attr_flag("trans_a", false)) {  // Gemm's transA: A [K, M] transposed by a copy first
    const int64_t M = gemm->workload.M, K = gemm->workload.K;
    a = copy(b, node, a, {K, M}, {M, K}, {1, 0}, {0, 0}, {1, 1}, "gpu transpose (Gemm's transA)");
  }
  // int8 activations (a request): the int8 GEMV where the target runs one, else float32 (resolve_qmatmul).
  const dsl::QMatMulWorkload wl = schedules::resolve_qmatmul(gemm->workload, b.target_).workload;
  ScheduleChoice choice;
  GpuKernels lowered = lower_with_record(
      b.schedules_ ? b.schedules_->for_qmatmul(wl) : std::nullopt,
      [&] { return schedules::default_qmatmul_schedule(wl, b.target_); },
      [&](const dsl::Schedule& s) { return schedules::lower_gpu_qmatmul(wl, s, b.target_, b.kernel_name()); },
      node.label(), &choice);
  dsl::PackedInt4Buffers packed = value_or_fail(
      dsl::pack_int4_weight(*gemm->weight, gemm->trans_b, schedules::layout_of(choice.schedule)), node.label());

  std::map<std::string, std::string> views;
  views["A"] = b.view(a, {wl.K, wl.M});
  if (wl.has_bias) views["bias"] = b.view(b.storage_of(node.input(1)), {wl.N});
  const std::string y = b.new_storage(wl.M * wl.N);
  bind_weight_and_output(b, node, packed, lowered, y, {wl.N, wl.M}, views);
  b.add(
      node.label(), choice.schedule.to_string() + " (" + choice.source + ")", lowered, views,
      nlohmann::json{{"alpha", double(node.attr_float("alpha", 1.0))}, {"beta", double(node.attr_float("beta", 1.0))}});
  // The kernel applies a lone Relu itself (halide_gemm_of gives the tuning form of the epilogue).
  const size_t first = wl.epilogue.is_lone_relu() ? 1 : 0;
  b.set_value(node.outputs[0], epilogue(b, node, first, y, shape_of(b.graph_, node.outputs[0])));
}

void add_rows(JobBuilder& b, const Node& node) {
  const Shape x = shape_of(b.graph_, node.input(0));
  const int64_t rank = int64_t(x.size());
  const bool softmax = node.op_type == "Softmax";
  int64_t axis = softmax ? node.attr_int("axis", node.opset < 13 ? 1 : -1) : node.attr_int("axis", -1);
  check(axis >= -rank && axis < std::max<int64_t>(rank, 1), ErrorKind::Invalid, node.label() + ": axis out of range");
  if (axis < 0) axis += rank;
  check(!softmax || node.opset < 13 || axis == rank - 1, ErrorKind::Unsupported,
        node.label() + ": a Softmax over a non-last axis has no GPU kernel yet");
  int64_t n = 1, rows = 1;
  for (int64_t d = 0; d < rank; ++d) (d < axis ? rows : n) *= x[d];
  std::map<std::string, std::string> views;
  nlohmann::json scalars = nlohmann::json::object();
  views["x"] = b.view(b.storage_of(node.input(0)), {n, rows});
  const bool has_bias = !softmax && node.has_input(2);
  if (!softmax) {
    for (size_t i = 1; i < node.outputs.size(); ++i)
      check(node.outputs[i].empty(), ErrorKind::Unsupported,
            node.label() + ": the Mean / InvStdDev outputs have no GPU kernel yet");
    for (size_t i = 1; i <= (has_bias ? 2u : 1u); ++i)
      check(num_elements(shape_of(b.graph_, node.input(i))) == n, ErrorKind::Unsupported,
            node.label() + ": a Scale or B broadcast within rows has no GPU kernel yet");
    views["scale"] = b.view(b.storage_of(node.input(1)), {n});
    if (has_bias) views["bias"] = b.view(b.storage_of(node.input(2)), {n});
    scalars["epsilon"] = node.attr_float("epsilon", 1e-5);
    scalars["count"] = double(n);
  }
  GpuKernels lowered =
      value_or_fail(schedules::lower_gpu_rows(softmax ? schedules::GpuRowOp::Softmax : schedules::GpuRowOp::LayerNorm,
                                              has_bias, b.target_, b.kernel_name()),
                    node.label());
  const std::string y = b.new_storage(n * rows);
  views["out"] = b.view(y, {n, rows});
  b.add(node.label(), softmax ? "gpu softmax, a thread per row" : "gpu layer norm, a thread per row", lowered, views,
        scalars);
  b.set_value(node.outputs[0], y);
}

// A direct 2-D conv (a 1-D one as 2-D of height 1) on the GPU conv template, then its epilogue on
// elementwise kernels.
void add_qconv(JobBuilder& b, const Node& node) {
  std::optional<HalideConv> conv = halide_conv_as_2d(node, b.graph_);
  if (!conv) {
    // A 1x1 conv of 1x1 planes (squeeze-excite's, after a global pool) is a GEMM of the planes as they lie.
    const Shape x = shape_of(b.graph_, node.input(0));
    std::optional<HalideGemm> gemm = halide_gemm_of(node, b.graph_);
    if (gemm && x.size() == 4 && x[2] * x[3] == 1 && gemm->workload.K == x[1] && gemm->workload.M == x[0])
      return add_qmatmul(b, node);
  }
  check(conv.has_value(), ErrorKind::Unsupported,
        node.label() +
            ": only 1-D and 2-D convs with more than one output position, and 1x1 convs of 1x1 planes, "
            "have a GPU kernel yet");
  dsl::QConvWorkload wl = conv->workload;
  wl.epilogue = {};  // applied by the elementwise kernels after it
  ScheduleChoice choice;
  GpuKernels lowered = lower_with_record(
      b.schedules_ ? b.schedules_->for_qconv(wl) : std::nullopt,
      [&] { return schedules::default_qconv_schedule(wl, b.target_); },
      [&](const dsl::Schedule& s) { return schedules::lower_gpu_qconv(wl, s, b.target_, b.kernel_name()); },
      node.label(), &choice);
  dsl::ConvInt4Buffers packed = value_or_fail(dsl::pack_conv_weight(*conv->weight), node.label());
  std::map<std::string, std::string> views;
  views["X"] = b.view(b.storage_of(node.input(0)), {wl.W, wl.H, wl.C, wl.N});
  if (wl.has_bias) views["bias"] = b.view(b.storage_of(node.input(1)), {wl.M});
  const std::string y = b.new_storage(wl.N * wl.M * wl.OH * wl.OW);
  bind_weight_and_output(b, node, packed, lowered, y, {wl.OW, wl.OH, wl.M, wl.N}, views);
  nlohmann::json scalars = nlohmann::json::object();
  for (const auto& [name, value] : dsl::qconv_int_arguments(wl, packed.block)) scalars[name] = int64_t(value);
  b.add(node.label(), choice.schedule.to_string() + " (" + choice.source + ")", lowered, views, scalars);
  b.set_value(node.outputs[0], epilogue(b, node, 0, y, shape_of(b.graph_, node.outputs[0])));
}

// GlobalAveragePool, GlobalMaxPool: each (n, c) plane reduced.
void add_global_pool(JobBuilder& b, const Node& node) {
  const Shape x = shape_of(b.graph_, node.input(0));
  check(x.size() >= 3, ErrorKind::Invalid, node.label() + ": the input must be [N, C, spatial...]");
  const int64_t rows = x[0] * x[1], n = num_elements(x) / std::max<int64_t>(rows, 1);
  const bool is_max = node.op_type == "GlobalMaxPool";
  GpuKernels lowered =
      value_or_fail(schedules::lower_gpu_global_pool(is_max, b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(rows);
  std::map<std::string, std::string> views = {{"x", b.view(b.storage_of(node.input(0)), {n, rows})},
                                              {"out", b.view(y, {rows})}};
  nlohmann::json scalars = nlohmann::json::object();
  if (!is_max) scalars["count"] = double(n);
  b.add(node.label(), is_max ? "gpu global max pool" : "gpu global average pool", lowered, views, scalars);
  b.set_value(node.outputs[0], y);
}

// MaxPool, AveragePool of 2-D windows.
void add_pool(JobBuilder& b, const Node& node) {
  const Shape x = shape_of(b.graph_, node.input(0)), out = shape_of(b.graph_, node.outputs[0]);
  check(x.size() == 4 && node.outputs.size() == 1, ErrorKind::Unsupported,
        node.label() + ": only 2-D pools without indices have a GPU kernel yet");
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  check(kernel.size() == 2 && kernel[0] * kernel[1] <= 64, ErrorKind::Unsupported,
        node.label() + ": a window of more than 64 taps has no GPU kernel yet");
  const ConvParams g = conv_params(node, Shape{x[0], 1, x[2], x[3]}, Shape{1, 1, kernel[0], kernel[1]});
  schedules::GpuPoolWindow w;
  w.is_max = node.op_type == "MaxPool";
  w.count_include_pad = node.attr_flag("count_include_pad", false);
  w.kh = int(g.kernel[0]), w.kw = int(g.kernel[1]), w.sh = int(g.strides[0]), w.sw = int(g.strides[1]);
  w.dh = int(g.dilations[0]), w.dw = int(g.dilations[1]);
  GpuKernels lowered = value_or_fail(schedules::lower_gpu_pool(w, b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(num_elements(out));
  std::map<std::string, std::string> views = {{"x", b.view(b.storage_of(node.input(0)), {x[3], x[2], x[0] * x[1]})},
                                              {"out", b.view(y, {out[3], out[2], out[0] * out[1]})}};
  nlohmann::json scalars = {{"pad_top", g.pads_begin[0]},
                            {"pad_left", g.pads_begin[1]},
                            {"pad_bottom", g.pads_end[0]},
                            {"pad_right", g.pads_end[1]}};
  b.add(
      node.label(),
      std::string(w.is_max ? "gpu max pool " : "gpu average pool ") + std::to_string(w.kh) + "x" + std::to_string(w.kw),
      lowered, views, scalars);
  b.set_value(node.outputs[0], y);
}

// Resize of H and W from sample tables computed here, once (the shapes are fixed).
void add_resize(JobBuilder& b, const Node& node) {
  const Shape x = shape_of(b.graph_, node.input(0));
  check(x.size() == 4, ErrorKind::Unsupported, node.label() + ": only 4-D Resize has a GPU kernel yet");
  std::vector<Tensor> inputs = {Tensor(DType::Float32, x)};
  for (size_t i = 1; i < node.inputs.size(); ++i) {
    check(node.inputs[i].empty() || b.graph_.is_constant(node.inputs[i]), ErrorKind::Unsupported,
          node.label() + ": Resize with computed scales or sizes has no GPU kernel yet");
    inputs.push_back(node.inputs[i].empty() ? Tensor() : b.graph_.initializers.at(node.inputs[i]));
  }
  const ResizePlan plan = resize_plan(node, inputs);
  check(plan.out_shape[0] == x[0] && plan.out_shape[1] == x[1], ErrorKind::Unsupported,
        node.label() + ": a Resize of N or C has no GPU kernel yet");
  std::map<std::string, std::string> views;
  auto table = [&](const std::string& name, const std::vector<ResizeSample>& samples, int which) {
    const int64_t n = int64_t(samples.size());
    Tensor t(which == 2 ? DType::Float32 : DType::Int32, {n});
    for (int64_t k = 0; k < n; ++k) {
      const ResizeSample& s = samples[size_t(k)];
      if (which == 2)
        t.mutable_data<float>()[k] = float(s.w1);
      else
        t.mutable_data<int32_t>()[k] = int32_t(which == 0 ? s.i0 : s.i1);
    }
    views[name] = b.view(b.constant_storage(node.label() + " " + name, t), {n});
  };
  table("w0", plan.w, 0), table("h0", plan.h, 0);
  if (!plan.nearest)
    table("w1", plan.w, 1), table("w_weight", plan.w, 2), table("h1", plan.h, 1), table("h_weight", plan.h, 2);
  GpuKernels lowered =
      value_or_fail(schedules::lower_gpu_resize(plan.nearest, b.target_, b.kernel_name()), node.label());
  const Shape& o = plan.out_shape;
  const std::string y = b.new_storage(num_elements(o));
  views["x"] = b.view(b.storage_of(node.input(0)), {x[3], x[2], x[0] * x[1]});
  views["out"] = b.view(y, {o[3], o[2], o[0] * o[1]});
  b.add(node.label(), plan.nearest ? "gpu resize nearest" : "gpu resize linear", lowered, views,
        nlohmann::json::object());
  b.set_value(node.outputs[0], y);
}

// A copy kernel from `input` into a new storage of `out` (ONNX shapes): output dim i reads input dim
// source[i] at start[i] + step[i] * position.
std::string copy(JobBuilder& b, const Node& node, const std::string& input, const Shape& in, const Shape& out,
                 const std::vector<int64_t>& source, const std::vector<int64_t>& start,
                 const std::vector<int64_t>& step, const std::string& what) {
  const int rank = int(in.size());
  check(rank >= 1 && int(out.size()) == rank, ErrorKind::Unsupported,
        node.label() + ": a copy of rank 0 or between ranks has no GPU kernel yet");
  // Innermost first: output dim i is inner dim rank-1-i.
  std::vector<int> out_dim(static_cast<size_t>(rank), 0);
  nlohmann::json scalars = nlohmann::json::object();
  for (int i = 0; i < rank; ++i) {
    const int j = rank - 1 - int(source[size_t(i)]);  // the input's inner dim
    out_dim[size_t(j)] = rank - 1 - i;
    scalars["start" + std::to_string(j)] = start[size_t(i)];
    scalars["step" + std::to_string(j)] = step[size_t(i)];
  }
  GpuKernels lowered = value_or_fail(schedules::lower_gpu_copy(out_dim, b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(num_elements(out));
  std::map<std::string, std::string> views = {{"in", b.view(input, innermost_first(in))},
                                              {"out", b.view(y, innermost_first(out))}};
  b.add(node.label(), what, lowered, views, scalars);
  return y;
}

// The integers of a constant input, or of the attribute `attr` before `opset` (Slice, Split).
std::vector<int64_t> constant_ints(JobBuilder& b, const Node& node, size_t input, const std::string& attr,
                                   bool from_input) {
  if (!from_input) return node.attr_ints(attr);
  if (!node.has_input(input)) return {};
  check(b.graph_.is_constant(node.input(input)), ErrorKind::Unsupported,
        node.label() + ": a computed '" + attr + "' has no GPU kernel yet");
  const Tensor& t = b.graph_.initializers.at(node.input(input));
  std::vector<int64_t> v;
  for (int64_t i = 0; i < t.size(); ++i) v.push_back(t.get_int(i));
  return v;
}

void add_transpose(JobBuilder& b, const Node& node) {
  const Shape in = shape_of(b.graph_, node.input(0)), out = shape_of(b.graph_, node.outputs[0]);
  std::vector<int64_t> perm = node.attr_ints("perm");
  if (perm.empty())
    for (int64_t i = int64_t(in.size()) - 1; i >= 0; --i) perm.push_back(i);
  b.set_value(node.outputs[0],
              copy(b, node, b.storage_of(node.input(0)), in, out, perm, std::vector<int64_t>(in.size(), 0),
                   std::vector<int64_t>(in.size(), 1), "gpu transpose"));
}

void add_slice(JobBuilder& b, const Node& node) {
  const Shape in = shape_of(b.graph_, node.input(0)), out = shape_of(b.graph_, node.outputs[0]);
  const int64_t rank = int64_t(in.size());
  const bool inputs = node.opset >= 10;
  std::vector<int64_t> starts = constant_ints(b, node, 1, "starts", inputs);
  std::vector<int64_t> axes = constant_ints(b, node, 3, "axes", inputs);
  std::vector<int64_t> steps = inputs ? constant_ints(b, node, 4, "steps", true) : std::vector<int64_t>{};
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(int64_t(i));
  std::vector<int64_t> source, start(size_t(rank), 0), step(size_t(rank), 1);
  for (int64_t d = 0; d < rank; ++d) source.push_back(d);
  for (size_t i = 0; i < axes.size() && i < starts.size(); ++i) {
    const int64_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
    check(a >= 0 && a < rank, ErrorKind::Invalid, node.label() + ": axis out of range");
    const int64_t dim = in[size_t(a)], st = i < steps.size() ? steps[i] : 1;
    check(st != 0, ErrorKind::Invalid, node.label() + ": a step of 0");
    int64_t s0 = starts[i] < 0 ? starts[i] + dim : starts[i];
    s0 = st > 0 ? std::clamp<int64_t>(s0, 0, dim) : std::clamp<int64_t>(s0, 0, dim - 1);
    start[size_t(a)] = s0;
    step[size_t(a)] = st;
  }
  b.set_value(node.outputs[0], copy(b, node, b.storage_of(node.input(0)), in, out, source, start, step, "gpu slice"));
}

void add_split(JobBuilder& b, const Node& node) {
  const Shape in = shape_of(b.graph_, node.input(0));
  const int64_t rank = int64_t(in.size());
  int64_t axis = node.attr_int("axis", 0);
  if (axis < 0) axis += rank;
  check(axis >= 0 && axis < rank, ErrorKind::Invalid, node.label() + ": axis out of range");
  std::vector<int64_t> source;
  for (int64_t d = 0; d < rank; ++d) source.push_back(d);
  int64_t at = 0;
  for (const std::string& output : node.outputs) {
    if (output.empty()) continue;
    const Shape out = shape_of(b.graph_, output);
    std::vector<int64_t> start(size_t(rank), 0);
    start[size_t(axis)] = at;
    at += out[size_t(axis)];
    b.set_value(output, copy(b, node, b.storage_of(node.input(0)), in, out, source, start,
                             std::vector<int64_t>(size_t(rank), 1), "gpu split"));
  }
}

void add_concat(JobBuilder& b, const Node& node) {
  const Shape out = shape_of(b.graph_, node.outputs[0]);
  const int64_t rank = int64_t(out.size());
  int64_t axis = node.attr_int("axis", 0);
  if (axis < 0) axis += rank;
  check(rank >= 1 && axis >= 0 && axis < rank, ErrorKind::Unsupported, node.label() + ": axis out of range");
  std::map<std::string, std::string> views;
  int inputs = 0;
  for (const std::string& input : node.inputs) {
    const Shape in = shape_of(b.graph_, input);
    if (num_elements(in) == 0) continue;  // an empty input adds nothing
    views["in" + std::to_string(inputs++)] = b.view(b.storage_of(input), innermost_first(in));
  }
  GpuKernels lowered = value_or_fail(
      schedules::lower_gpu_concat(inputs, int(rank), int(rank - 1 - axis), b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(num_elements(out));
  views["out"] = b.view(y, innermost_first(out));
  b.add(node.label(), "gpu concat of " + std::to_string(inputs), lowered, views, nlohmann::json::object());
  b.set_value(node.outputs[0], y);
}

// A ConvTranspose whose kernel equals its stride (the usual 2x upsampling), its weight as float32.
void add_conv_transpose(JobBuilder& b, const Node& node) {
  check(conv_transpose_runs_direct(node, b.graph_), ErrorKind::Unsupported,
        node.label() + ": only a ConvTranspose whose kernel equals its stride has a GPU kernel yet");
  const Tensor& weight = b.graph_.initializers.at(node.input(1));
  const Shape x = shape_of(b.graph_, node.input(0)), out = shape_of(b.graph_, node.outputs[0]);
  check(weight.rank() == 4 && x.size() == 4, ErrorKind::Unsupported,
        node.label() + ": only a 2-D ConvTranspose has a GPU kernel yet");
  const Shape& ws = weight.shape();  // [C, M, kh, kw]
  Tensor w32(DType::Float32, ws), bias(DType::Float32, {ws[1]});
  for (int64_t i = 0; i < weight.size(); ++i) w32.mutable_data<float>()[i] = float(weight.get(i));
  if (node.has_input(2)) {
    const Tensor& given =
        b.graph_.initializers.count(node.input(2)) ? b.graph_.initializers.at(node.input(2)) : Tensor();
    check(given.size() == ws[1], ErrorKind::Unsupported, node.label() + ": a computed bias has no GPU kernel yet");
    for (int64_t m = 0; m < ws[1]; ++m) bias.mutable_data<float>()[m] = float(given.get(m));
  } else {
    for (int64_t m = 0; m < ws[1]; ++m) bias.mutable_data<float>()[m] = 0.0f;
  }
  GpuKernels lowered = value_or_fail(
      schedules::lower_gpu_conv_transpose(int(ws[2]), int(ws[3]), b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(num_elements(out));
  std::map<std::string, std::string> views = {
      {"x", b.view(b.storage_of(node.input(0)), innermost_first(x))},
      {"w", b.view(b.constant_storage(node.label() + " weight", w32), innermost_first(ws))},
      {"bias", b.view(b.constant_storage(node.label() + " bias", bias), {ws[1]})},
      {"out", b.view(y, innermost_first(out))}};
  b.weight_bytes_ += (w32.size() + bias.size()) * 4;
  b.add(node.label(), "gpu conv transpose " + std::to_string(ws[2]) + "x" + std::to_string(ws[3]) + ", float32 weight",
        lowered, views, nlohmann::json::object());
  b.set_value(node.outputs[0], epilogue(b, node, 0, y, out));
}

// Gather of constant indices that step evenly (one index, or a run such as 0, 1, 2): a strided copy.
void add_gather(JobBuilder& b, const Node& node) {
  const Shape data = shape_of(b.graph_, node.input(0));
  const int64_t rank = int64_t(data.size());
  int64_t axis = node.attr_int("axis", 0);
  if (axis < 0) axis += rank;
  check(axis >= 0 && axis < rank, ErrorKind::Invalid, node.label() + ": axis out of range");
  // The data seen as (inner, axis, outer), for the kernel that reads indices from a buffer.
  int64_t inner = 1, outer = 1;
  for (int64_t d = axis + 1; d < rank; ++d) inner *= data[size_t(d)];
  for (int64_t d = 0; d < axis; ++d) outer *= data[size_t(d)];
  auto gather_by_table = [&](const std::string& indices, int64_t m, const std::string& what) {
    GpuKernels lowered = value_or_fail(schedules::lower_gpu_gather(b.target_, b.kernel_name()), node.label());
    const std::string y = b.new_storage(inner * m * outer);
    b.add(node.label(), what, lowered,
          {{"in", b.view(b.storage_of(node.input(0)), {inner, data[size_t(axis)], outer})},
           {"idx", b.view(indices, {m})},
           {"out", b.view(y, {inner, m, outer})}},
          nlohmann::json::object());
    b.set_value(node.outputs[0], y);
  };
  if (!b.graph_.is_constant(node.input(1))) {  // indices computed or given at run time (token ids)
    const std::string indices = b.any_storage_of(node.input(1));
    check(b.buffers_[indices]["type"] == "i32", ErrorKind::Unsupported,
          node.label() + ": its indices '" + node.input(1) + "' are not integers");
    gather_by_table(indices, num_elements(shape_of(b.graph_, node.input(1))), "gpu gather (computed indices)");
    return;
  }
  std::vector<int64_t> at = constant_ints(b, node, 1, "indices", true);
  const Tensor& indices = b.graph_.initializers.at(node.input(1));
  for (int64_t& i : at) {
    if (i < 0) i += data[size_t(axis)];
    check(i >= 0 && i < data[size_t(axis)], ErrorKind::Invalid, node.label() + ": an index out of range");
  }
  const int64_t step = at.size() > 1 ? at[1] - at[0] : 1;
  bool even = !at.empty() && indices.rank() <= 1 && step != 0;
  for (size_t k = 1; k < at.size(); ++k) even = even && at[k] - at[k - 1] == step;
  if (!even) {  // any other indices: a table of them
    const int64_t m = int64_t(at.size());
    Tensor table(DType::Int32, {m});
    for (int64_t k = 0; k < m; ++k) table.mutable_data<int32_t>()[k] = int32_t(at[size_t(k)]);
    gather_by_table(b.constant_storage(node.label() + " indices", table), m, "gpu gather (index table)");
    return;
  }
  Shape out = data;
  out[size_t(axis)] = int64_t(at.size());
  std::vector<int64_t> source, start(size_t(rank), 0), steps(size_t(rank), 1);
  for (int64_t d = 0; d < rank; ++d) source.push_back(d);
  start[size_t(axis)] = at[0];
  steps[size_t(axis)] = step;
  // The output has the index's rank in place of the axis; the same elements, in the same order.
  b.set_value(node.outputs[0],
              copy(b, node, b.storage_of(node.input(0)), data, out, source, start, steps, "gpu gather (strided copy)"));
}

// Pad with constant arguments (runtime/ops/pad.h resolves them by opset).
void add_pad(JobBuilder& b, const Node& node) {
  const Shape in = shape_of(b.graph_, node.input(0)), out = shape_of(b.graph_, node.outputs[0]);
  const int64_t rank = int64_t(in.size());
  std::optional<PadArgs> args = pad_args(node, b.graph_, rank);
  check(args.has_value(), ErrorKind::Unsupported, node.label() + ": computed pads have no GPU kernel yet");
  const std::map<std::string, schedules::GpuPadMode> modes = {{"constant", schedules::GpuPadMode::Constant},
                                                              {"edge", schedules::GpuPadMode::Edge},
                                                              {"reflect", schedules::GpuPadMode::Reflect}};
  check(modes.count(args->mode), ErrorKind::Unsupported,
        node.label() + ": Pad mode '" + args->mode + "' has no GPU kernel yet");
  nlohmann::json scalars = nlohmann::json::object();
  for (int64_t d = 0; d < rank; ++d) {
    check(args->mode != "reflect" || (args->begin[size_t(d)] < in[size_t(d)] && args->end[size_t(d)] < in[size_t(d)]),
          ErrorKind::Invalid, node.label() + ": a reflect pad must be shorter than its dim");
    scalars["begin" + std::to_string(rank - 1 - d)] = args->begin[size_t(d)];
  }
  if (args->mode == "constant") scalars["value"] = args->value;
  GpuKernels lowered = value_or_fail(
      schedules::lower_gpu_pad(modes.at(args->mode), int(rank), b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(num_elements(out));
  b.add(node.label(), "gpu pad " + args->mode, lowered,
        {{"in", b.view(b.storage_of(node.input(0)), innermost_first(in))}, {"out", b.view(y, innermost_first(out))}},
        scalars);
  b.set_value(node.outputs[0], y);
}

// A node on the elementwise kernel of `key`, over all its inputs: Where, whose condition is a float
// mask (a bool constant's storage, or a comparison's result), and the comparisons and logic, which
// make masks (dsl/elementwise_expr.h's ":mask" keys).
void add_elementwise_node(JobBuilder& b, const Node& node, const std::string& key) {
  std::vector<std::string> operands;
  std::vector<Shape> shapes;
  for (const std::string& in : node.inputs) {
    operands.push_back(b.storage_of(in));
    shapes.push_back(shape_of(b.graph_, in));
  }
  Shape shape;
  b.set_value(node.outputs[0], elementwise(b, node.label(), key, {}, operands, shapes, &shape));
}

// ReduceSum/Mean/Max/Min over contiguous axes: the input seen as (inner, reduced, outer).
void add_reduce(JobBuilder& b, const Node& node) {
  const Shape x = shape_of(b.graph_, node.input(0));
  const int64_t rank = int64_t(x.size());
  std::vector<int64_t> axes = node.has_input(1) ? constant_ints(b, node, 1, "axes", true) : node.attr_ints("axes");
  if (axes.empty()) {
    check(!node.attr_flag("noop_with_empty_axes", false), ErrorKind::Unsupported, node.label() + ": a no-op reduction");
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  }
  for (int64_t& a : axes) a = a < 0 ? a + rank : a;
  std::sort(axes.begin(), axes.end());
  for (size_t k = 1; k < axes.size(); ++k)
    check(axes[k] == axes[k - 1] + 1, ErrorKind::Unsupported,
          node.label() + ": a reduction over axes that are not adjacent has no GPU kernel yet");
  int64_t inner = 1, reduced = 1, outer = 1;
  for (int64_t d = 0; d < rank; ++d) (d < axes.front() ? outer : d > axes.back() ? inner : reduced) *= x[size_t(d)];
  const std::string op = node.op_type == "ReduceMean"  ? "mean"
                         : node.op_type == "ReduceMax" ? "max"
                         : node.op_type == "ReduceMin" ? "min"
                                                       : "sum";
  GpuKernels lowered = value_or_fail(schedules::lower_gpu_reduce(op, b.target_, b.kernel_name()), node.label());
  const std::string y = b.new_storage(inner * outer);
  std::map<std::string, std::string> views = {{"x", b.view(b.storage_of(node.input(0)), {inner, reduced, outer})},
                                              {"out", b.view(y, {inner, outer})}};
  nlohmann::json scalars = nlohmann::json::object();
  if (op == "mean") scalars["count"] = double(reduced);
  b.add(node.label(), "gpu reduce " + op, lowered, views, scalars);
  b.set_value(node.outputs[0], y);
}

// out = a x b for each batch index: a (K, M, B), b (N, K, B) innermost first.
std::string batch_matmul(JobBuilder& b, const std::string& node, const std::string& a_storage,
                         const std::string& b_storage, int64_t batch, int64_t M, int64_t K, int64_t N,
                         const std::string& what) {
  GpuKernels lowered = value_or_fail(schedules::lower_gpu_batch_matmul(b.target_, b.kernel_name()), node);
  const std::string y = b.new_storage(batch * M * N);
  std::map<std::string, std::string> views = {{"a", b.view(a_storage, {K, M, batch})},
                                              {"b", b.view(b_storage, {N, K, batch})},
                                              {"out", b.view(y, {N, M, batch})}};
  b.add(node, what, lowered, views, nlohmann::json::object());
  return y;
}

// The batch size of [..., X, Y] shapes whose batch dims must agree.
// The matrices of a batched product with their batch dims broadcast (numpy's rules): an operand whose
// batch dims are not the broadcast ones is copied out to them first. Returns the number of matrices; the
// storages in `operands` become those of equal batches.
int64_t broadcast_batches(JobBuilder& b, const Node& node, std::vector<std::string>& operands,
                          const std::vector<Shape>& shapes) {
  size_t rank = 0;
  for (const Shape& s : shapes) {
    check(s.size() >= 2, ErrorKind::Unsupported, node.label() + ": a 1-D matmul operand has no GPU kernel yet");
    rank = std::max(rank, s.size());
  }
  Shape batch(rank - 2, 1);
  for (const Shape& s : shapes)
    for (size_t d = 0; d + 2 < s.size(); ++d) {
      int64_t& o = batch[batch.size() - (s.size() - 2) + d];
      check(s[d] == o || s[d] == 1 || o == 1, ErrorKind::Invalid, node.label() + ": batch dims do not broadcast");
      if (s[d] != 1) o = s[d];
    }
  for (size_t k = 0; k < shapes.size(); ++k) {
    Shape full = batch;
    full.insert(full.end(), shapes[k].end() - 2, shapes[k].end());
    if (full == shapes[k]) continue;
    Shape shape;
    operands[k] = elementwise(b, node.label() + " (batch broadcast)", kBroadcastCopy, {}, {operands[k]}, {shapes[k]},
                              &shape, full);
  }
  return num_elements(batch);
}

// MatMul of two activations.
void add_matmul(JobBuilder& b, const Node& node) {
  const Shape a = shape_of(b.graph_, node.input(0)), w = shape_of(b.graph_, node.input(1));
  std::vector<std::string> operands = {b.storage_of(node.input(0)), b.storage_of(node.input(1))};
  const int64_t batch = broadcast_batches(b, node, operands, {a, w});
  const int64_t M = a[a.size() - 2], K = a.back(), N = w.back();
  std::string y = batch_matmul(b, node.label(), operands[0], operands[1], batch, M, K, N, "gpu batch matmul");
  b.set_value(node.outputs[0], epilogue(b, node, 0, y, shape_of(b.graph_, node.outputs[0])));
}

// tetra.Attention, softmax(scale * A x B) x V: the scores through device memory (a matmul, a softmax,
// a matmul). Operands that are views of their inputs are copied out first, a scale multiplies A, and a
// transposed result is copied into place (runtime/ops/attention_layout.h).
void add_attention(JobBuilder& b, const Node& node) {
  std::vector<Shape> bases;
  for (size_t i = 0; i < 3; ++i) bases.push_back(shape_of(b.graph_, node.input(i)));
  const AttentionLayout l = AttentionLayout::of(node, {bases[0].size(), bases[1].size(), bases[2].size()});
  const OperandView* views[] = {&l.a, &l.b, &l.v};
  std::vector<Shape> shapes;
  std::vector<std::string> operands;
  for (size_t i = 0; i < 3; ++i) {
    const OperandView& view = *views[i];
    const Shape& base = bases[i];
    shapes.push_back(view.shape(base));
    operands.push_back(b.storage_of(node.input(i)));
    if (view.identity()) continue;
    // A copy of the base's rank: the held dims first (extent 1, at their index), then the walked ones.
    std::vector<int64_t> source, start, step(base.size(), 1);
    Shape out;
    for (size_t d = 0; d < base.size(); ++d)
      if (view.fixed[d] >= 0) {
        source.push_back(int64_t(d));
        start.push_back(view.fixed[d]);
        out.push_back(1);
      }
    for (int64_t d : view.dims) {
      source.push_back(d);
      start.push_back(0);
      out.push_back(base[size_t(d)]);
    }
    operands.back() =
        copy(b, node, operands.back(), base, out, source, start, step, "gpu attention operand (view copy)");
  }
  if (l.scale != 1) {
    Tensor c(DType::Float32, {1});
    c.mutable_data<float>()[0] = float(l.scale);
    Shape scaled;
    operands[0] =
        elementwise(b, node.label() + " (scale)", "Mul", {},
                    {operands[0], b.constant_storage(node.label() + " scale", c)}, {shapes[0], Shape{1}}, &scaled);
  }
  const Shape &a = shapes[0], &k = shapes[1], &v = shapes[2];
  const int64_t batch = broadcast_batches(b, node, operands, shapes);
  const int64_t M = a[a.size() - 2], K = a.back(), N = k.back(), D = v.back();
  const std::string scores =
      batch_matmul(b, node.label(), operands[0], operands[1], batch, M, K, N, "gpu attention scores (batch matmul)");
  GpuKernels softmax = value_or_fail(
      schedules::lower_gpu_rows(schedules::GpuRowOp::Softmax, false, b.target_, b.kernel_name()), node.label());
  const std::string p = b.new_storage(batch * M * N);
  b.add(node.label(), "gpu attention softmax", softmax,
        {{"x", b.view(scores, {N, M * batch})}, {"out", b.view(p, {N, M * batch})}}, nlohmann::json::object());
  std::string y = batch_matmul(b, node.label(), p, operands[2], batch, M, N, D, "gpu attention output (batch matmul)");
  if (!l.y_perm.empty()) {
    Shape result = a;
    result.back() = D;
    y = copy(b, node, y, result, permuted(result, l.y_perm), l.y_perm, std::vector<int64_t>(result.size(), 0),
             std::vector<int64_t>(result.size(), 1), "gpu attention result (transposed copy)");
  }
  b.set_value(node.outputs[0], epilogue(b, node, 0, y, shape_of(b.graph_, node.outputs[0])));
}

void add_node(JobBuilder& b, const Node& node) {
  if (node.domain == "tetra" && node.op_type == "QMatMul") return add_qmatmul(b, node);
  if (node.domain == "tetra" && node.op_type == "QConv") return add_qconv(b, node);
  if (node.domain == "tetra" && node.op_type == "Attention") return add_attention(b, node);
  if (node.domain.empty()) {
    if (node.op_type == "GlobalAveragePool" || node.op_type == "GlobalMaxPool") return add_global_pool(b, node);
    if (node.op_type == "MaxPool" || node.op_type == "AveragePool") return add_pool(b, node);
    if (node.op_type == "Resize") return add_resize(b, node);
    if (node.op_type == "Transpose") return add_transpose(b, node);
    if (node.op_type == "Slice") return add_slice(b, node);
    if (node.op_type == "Split") return add_split(b, node);
    if (node.op_type == "Concat") return add_concat(b, node);
    if (node.op_type == "ConvTranspose") return add_conv_transpose(b, node);
    if (node.op_type == "Gather") return add_gather(b, node);
    if (node.op_type == "Pad") return add_pad(b, node);
    if (node.op_type == "Expand") {  // a broadcast copy
      Shape shape;
      b.set_value(node.outputs[0],
                  elementwise(b, node.label(), kBroadcastCopy, {}, {b.storage_of(node.input(0))},
                              {shape_of(b.graph_, node.input(0))}, &shape, shape_of(b.graph_, node.outputs[0])));
      return;
    }
    if (node.op_type == "Where") return add_elementwise_node(b, node, "Where");
    if (is_predicate(node.op_type)) return add_elementwise_node(b, node, node.op_type + ":mask");
    if (node.op_type == "Cast") {  // float values are float32 and bools float masks on the GPU
      const int64_t to = node.attr_int("to", 0);
      if (to == int64_t(DType::Bool)) {
        Shape shape;
        b.set_value(node.outputs[0], elementwise(b, node.label(), "Cast:mask", {}, {b.storage_of(node.input(0))},
                                                 {shape_of(b.graph_, node.input(0))}, &shape));
        return;
      }
      check(to == int64_t(DType::Float32) || to == int64_t(DType::Float16), ErrorKind::Unsupported,
            node.label() +
                ": a Cast to another type than float32, float16 or bool has no GPU kernel (the GPU path holds "
                "float values, bools as float masks)");
      b.set_value(node.outputs[0], b.storage_of(node.input(0)));
      return;
    }
    if (node.op_type == "MatMul") return add_matmul(b, node);
    if (node.op_type == "ReduceMean" || node.op_type == "ReduceSum" || node.op_type == "ReduceMax" ||
        node.op_type == "ReduceMin")
      return add_reduce(b, node);
  }
  if (node.domain.empty() && kViewOps.count(node.op_type)) {
    b.set_value(node.outputs[0], b.storage_of(node.input(0)));
    return;
  }
  if (node.domain.empty() && (node.op_type == "Softmax" || node.op_type == "LayerNormalization"))
    return add_rows(b, node);
  std::optional<ActivationCall> call = elementwise_call(node, b.graph_);
  check(call.has_value(), ErrorKind::Unsupported,
        node.label() + ": " + (node.domain.empty() ? "" : node.domain + ".") + node.op_type +
            " has no GPU kernel yet, so the model cannot stay on the device");
  std::vector<std::string> operands;
  std::vector<Shape> shapes;
  const size_t count = node.op_type == "Clip" ? 1 : node.inputs.size();  // Clip's bounds are parameters
  for (size_t i = 0; i < count; ++i) {
    operands.push_back(b.storage_of(node.input(i)));
    shapes.push_back(shape_of(b.graph_, node.input(i)));
  }
  Shape shape;
  std::string y = elementwise(b, node.label(), call->key, call->params, operands, shapes, &shape);
  b.set_value(node.outputs[0], epilogue(b, node, 0, y, shape));
}

}  // namespace

dsl::Result<GpuModelJob> write_gpu_model_job(const Graph& graph, const std::map<std::string, Tensor>& inputs,
                                             const dsl::TargetSpec& target, const ScheduleSource* schedules,
                                             const std::string& dir, int timing_runs) {
  try {
    std::error_code ec;
    fs::create_directories(dir, ec);
    check(fs::is_directory(dir), ErrorKind::Io, "cannot make the job's folder " + dir);
    JobBuilder b(graph, target, schedules, dir);
    for (const ValueInfo& in : graph.inputs) {
      auto it = inputs.find(in.name);
      check(it != inputs.end(), ErrorKind::Invalid, "input '" + in.name + "' is not given");
      b.set_value(in.name, b.input_storage(in.name, it->second));
    }
    for (const Node& node : graph.nodes) add_node(b, node);
    nlohmann::json model = {{"inputs", nlohmann::json::object()}, {"outputs", nlohmann::json::object()}};
    for (const ValueInfo& in : graph.inputs) model["inputs"][in.name] = b.any_storage_of(in.name);
    std::set<std::string> written;
    for (size_t i = 0; i < graph.outputs.size(); ++i) {
      const ValueInfo* info = graph.find_value(graph.outputs[i].name);
      check(!info || is_float(info->dtype), ErrorKind::Unsupported,
            "output '" + graph.outputs[i].name + "' is " + (info ? dtype_name(info->dtype) : "") +
                ": the GPU path returns float outputs (bools are float masks there, integers only indices)");
      const std::string s = b.storage_of(graph.outputs[i].name);
      check(
          written.insert(s).second && !b.buffers_[s].contains("file"), ErrorKind::Unsupported,
          "output '" + graph.outputs[i].name + "' is an input, a constant or another output: not computed on the GPU");
      b.buffers_[s]["output"] = "output_" + std::to_string(i) + ".bin";
      model["outputs"][graph.outputs[i].name] = s;
    }
    const dsl::gpu::Dialect dialect = dsl::gpu::dialect_of(target.family);
    dsl::Result<std::string> program = dsl::gpu::write_device_program(b.kernels_, dialect, target.gpu_arch, dir);
    if (!program) return program.failure();
    nlohmann::json job = {{"dialect", dsl::gpu::dialect_name(dialect)},
                          {"source", program.value()},
                          {"kernels", b.launches_},
                          {"buffers", b.buffers_},
                          {"scalars", b.scalars_},
                          {"model", model},
                          {"title", graph.name}};
    if (timing_runs > 0) job["timing"] = {{"runs", timing_runs}, {"bytes", b.weight_bytes_}};
    GpuModelJob out;
    out.job_file = (fs::path(dir) / "job.json").string();
    std::ofstream file(out.job_file);
    file << job.dump(1);
    check(bool(file), ErrorKind::Io, "cannot write " + out.job_file);
    out.kernels = b.described_;
    out.launches = int(b.launches_.size());
    out.weight_bytes = b.weight_bytes_;
    return out;
  } catch (const Error& e) {
    return Failure{FailureKind::Unsupported, target.name, e.what()};
  }
}

dsl::Result<std::map<std::string, Tensor>> read_gpu_model_outputs(const Graph& graph, const std::string& dir) {
  std::map<std::string, Tensor> outputs;
  for (size_t i = 0; i < graph.outputs.size(); ++i) {
    const std::string& name = graph.outputs[i].name;
    std::optional<Shape> shape = static_shape(graph, name);
    if (!shape) return Failure{FailureKind::Unsupported, name, "has no concrete shape"};
    const fs::path path = fs::path(dir) / ("output_" + std::to_string(i) + ".bin");
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (int64_t(bytes.size()) != num_elements(*shape) * 4)
      return Failure{FailureKind::Run, path.string(), "does not hold output '" + name + "'"};
    Tensor value(DType::Float32, *shape, std::move(bytes));
    const ValueInfo* info = graph.find_value(name);
    if (info && info->dtype == DType::Float16) {  // held as float32 on the device, rounded once at the end
      Tensor half(DType::Float16, *shape);
      for (int64_t k = 0; k < value.size(); ++k) half.set(k, value.get(k));
      value = std::move(half);
    }
    outputs[name] = std::move(value);
  }
  return outputs;
}

}  // namespace tetra
