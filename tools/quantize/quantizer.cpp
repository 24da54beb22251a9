#include "tools/quantize/quantizer.h"

#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "tools/quantize/bias_correction.h"
#include "tools/quantize/calibration.h"
#include "tools/quantize/opset_upgrade.h"
#include "tools/quantize/proto_util.h"
#include "tools/quantize/weight_sources.h"

namespace tetra::quantize {
namespace {

namespace fs = std::filesystem;
constexpr int64_t kDqOpset = 21;        // DequantizeLinear with int4 and block_size
constexpr int64_t kInt4IrVersion = 10;  // int4 element types
constexpr int64_t kProtobufLimit = (int64_t(1) << 31) - 1;
// Bias correction needs input means it can trust on data it was not fitted to: a mean of n values
// cancels 1/n of the layer's error on the calibration data that it cannot cancel elsewhere, so
// with fewer values (a classifier head sees one per data set) the greedy choice would be fooled.
constexpr int64_t kMinValuesPerMean = 32;

// One weight to quantize and how; a shared weight has one job for all its consumers.
struct Job {
  std::string weight;          // initializer name
  std::vector<int> consumers;  // node indices in the main graph
  std::string layer;           // the first consumer's label
  int64_t axis = 0, block = 0;  // DequantizeLinear layout (block 0: per-axis)
  bool transposed = false;     // Gemm transB=1: the weight is stored [N, K]
  bool nbits = false;          // becomes MatMulNBits instead
  QuantizedWeight q;           // dq: as stored; nbits: as [N, K]
  Tensor rounding;             // dequantized minus float, in the weight's own layout
  LayerReport report;
};

// Where a consumer reads its weight's reduction axis: the quantization blocks run along it.
struct Layout {
  int64_t reduce_axis, channel_axis;
  bool transposed;
};
Layout layout_of(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  if (op == "Conv") return {1, 0, false};
  if (op == "ConvTranspose") return {0, 1, false};
  bool transposed = op == "Gemm" && attr_int(n, "transB", 0) != 0;
  return transposed ? Layout{1, 0, true} : Layout{0, 1, false};
}

int64_t element_count(const onnx::TensorProto& t) {
  int64_t count = 1;
  for (int64_t d : t.dims()) count *= d;
  return count;
}

class Quantizer {
 public:
  Quantizer(onnx::ModelProto& model, const std::string& base_dir, const QuantizeOptions& opt)
      : model_(model), base_dir_(base_dir), opt_(opt) {}

  QuantizeReport run() {
    for (auto& line : gather_weights(model_, base_dir_)) report_.notes.push_back(line);
    plan();
    if (std::any_of(jobs_.begin(), jobs_.end(), [](const Job& j) { return !j.nbits; })) {
      for (auto& line : upgrade_opset(model_, kDqOpset, base_dir_)) report_.notes.push_back(line);
    }
    for (Job& job : jobs_) quantize(job);
    std::vector<bool> chosen(jobs_.size(), true);
    if (!opt_.calibration_data.empty()) chosen = calibrate();
    onnx::ModelProto result = apply(chosen);
    model_.Swap(&result);
    for (size_t j = 0; j < jobs_.size(); ++j) {
      if (chosen[j]) {
        report_.quantized.push_back(jobs_[j].report);
        report_.weight_bytes_before += jobs_[j].report.float_bytes;
      } else {
        report_.kept_float.push_back(jobs_[j].report);
      }
    }
    return report_;
  }

 private:
  const onnx::GraphProto& graph() const { return model_.graph(); }
  const onnx::TensorProto* initializer(const std::string& name) const {
    for (const auto& t : graph().initializer())
      if (t.name() == name) return &t;
    return nullptr;
  }
  Tensor load(const std::string& name) const { return tensor_from_proto(*initializer(name), base_dir_); }

  // Decides which weights to quantize and with which layout, noting every weight it leaves alone.
  void plan() {
    const auto& g = graph();
    std::map<std::string, int> uses = count_uses(g), weight_uses;
    std::set<std::string> graph_inputs;
    for (const auto& in : g.input()) graph_inputs.insert(in.name());
    for (const auto& n : g.node())
      if (reads_weight(n) && n.input_size() > 1) ++weight_uses[n.input(1)];

    std::map<std::string, size_t> job_of;
    std::set<std::string> refused;  // weights with a reason already reported
    for (int k = 0; k < g.node_size(); ++k) {
      const onnx::NodeProto& n = g.node(k);
      if (!reads_weight(n) || n.input_size() < 2) continue;
      const std::string& w = n.input(1);
      auto skip = [&](const std::string& why) {
        report_.skipped.push_back(label(n) + ": " + why);
        refused.insert(w);
      };
      if (refused.count(w)) {
        skip("weight '" + w + "' is left in float (see above)");
        continue;
      }
      const onnx::TensorProto* t = initializer(w);
      if (!t) {
        skip("its weight '" + w + "' is computed at run time, not a constant");
        continue;
      }
      if (!job_of.count(w) && !refused.count(w)) report_.candidate_weight_bytes += element_count(*t) * (t->data_type() == int32_t(DType::Float16) ? 2 : 4);
      if (graph_inputs.count(w)) {
        skip("weight '" + w + "' is also a graph input, so a caller may replace it");
        continue;
      }
      if (t->data_type() != int32_t(DType::Float32) && t->data_type() != int32_t(DType::Float16)) {
        skip("weight '" + w + "' is " + dtype_name(dtype_from_onnx(t->data_type())) + ", not float32 or float16");
        continue;
      }
      if (uses[w] != weight_uses[w]) {
        skip("weight '" + w + "' is also read by other nodes than weight inputs");
        continue;
      }
      const int64_t rank = t->dims_size();
      const bool conv = n.op_type() == "Conv" || n.op_type() == "ConvTranspose";
      if (conv ? rank < 3 : rank != 2) {
        skip("weight '" + w + "' has rank " + std::to_string(rank));
        continue;
      }
      const Layout layout = layout_of(n);
      const bool blocked = t->dims(layout.reduce_axis) > opt_.block_size;
      Job job;
      job.weight = w;
      job.consumers = {k};
      job.layer = n.name().empty() ? label(n) : n.name();
      job.transposed = layout.transposed;
      job.axis = blocked ? layout.reduce_axis : layout.channel_axis;
      job.block = blocked ? opt_.block_size : 0;
      job.nbits = !conv && opt_.format == "matmulnbits" && weight_uses[w] == 1 && nbits_ok(n);
      auto existing = job_of.find(w);
      if (existing == job_of.end()) {
        job_of[w] = jobs_.size();
        jobs_.push_back(job);
        continue;
      }
      Job& shared = jobs_[existing->second];
      if (shared.axis != job.axis || shared.block != job.block) {
        report_.skipped.push_back(label(n) + ": weight '" + w + "' is shared by nodes that reduce along different axes");
        refused.insert(w);
        for (int c : shared.consumers) report_.skipped.push_back(label(g.node(c)) + ": weight '" + w + "' is shared by nodes that reduce along different axes");
        jobs_.erase(jobs_.begin() + existing->second);
        job_of.clear();
        for (size_t j = 0; j < jobs_.size(); ++j) job_of[jobs_[j].weight] = j;
        continue;
      }
      shared.consumers.push_back(k);
    }
  }

  // MatMulNBits computes A x B^T + bias; Gemm fits when it does not transpose A or scale the product.
  bool nbits_ok(const onnx::NodeProto& n) {
    if (n.op_type() == "MatMul") return true;
    std::string why;
    if (attr_int(n, "transA", 0) != 0) why = "transA=1";
    else if (attr_float(n, "alpha", 1.0f) != 1.0f) why = "alpha != 1";
    else if (n.input_size() > 2 && !n.input(2).empty()) {
      const onnx::TensorProto* c = initializer(n.input(2));
      const onnx::TensorProto* w = initializer(n.input(1));
      int64_t N = attr_int(n, "transB", 0) ? w->dims(0) : w->dims(1);
      if (!c) why = "its bias is not a constant";
      else if (element_count(*c) != N || c->dims_size() < 1 || c->dims_size() > 2) why = "its bias is not one value per column";
    }
    if (why.empty()) return true;
    report_.notes.push_back(label(n) + " uses DequantizeLinear instead of MatMulNBits: " + why);
    return false;
  }

  void quantize(Job& job) {
    const onnx::NodeProto& n = graph().node(job.consumers[0]);
    Tensor w = load(job.weight);
    Tensor reference = w;
    if (job.nbits) {
      reference = job.transposed ? w : transpose_2d(w);
      job.q = quantize_weight(reference, job.weight, 1, opt_.block_size, opt_.weights);
    } else {
      job.q = quantize_weight(w, job.weight, job.axis, job.block, opt_.weights);
    }
    job.rounding = Tensor(DType::Float32, job.q.shape());
    for (int64_t i = 0; i < reference.size(); ++i) job.rounding.set(i, double(job.q.value(i)) - reference.get(i));
    if (job.nbits && !job.transposed) job.rounding = transpose_2d(job.rounding);
    job.report = {job.layer, n.op_type(), job.weight, shape_str(w.shape()),
                  job.nbits ? "MatMulNBits(block " + std::to_string(opt_.block_size) + ")" : job.q.granularity(),
                  measure(job.q, reference), w.byte_size(), std::nullopt};
  }

  // A copy of the model with the weights of the chosen jobs quantized.
  onnx::ModelProto apply(const std::vector<bool>& chosen) {
    onnx::ModelProto out = model_;
    onnx::GraphProto* g = out.mutable_graph();
    NameSet names(*g);
    std::map<std::string, int> uses = count_uses(*g);
    std::set<std::string> dropped;
    std::vector<onnx::NodeProto> dq_nodes;
    bool any_dq = false, any_nbits = false;
    auto add = [&](const std::string& base, const Tensor& t, bool weight_part) {
      std::string name = names.fresh(base);
      tensor_to_proto(t, name, g->add_initializer());
      if (weight_part) report_.weight_bytes_after += t.byte_size();
      return name;
    };
    report_.weight_bytes_after = 0;
    for (size_t j = 0; j < jobs_.size(); ++j) {
      if (!chosen[j]) continue;
      const Job& job = jobs_[j];
      dropped.insert(job.weight);
      if (!job.nbits) {
        // int4 initializer + DequantizeLinear producing the weight's name, so consumers are unchanged.
        any_dq = true;
        onnx::NodeProto dq;
        dq.set_op_type("DequantizeLinear");
        dq.set_name(names.fresh(job.weight + "_dequantize"));
        dq.add_input(add(job.weight + "_q4", job.q.data, true));
        dq.add_input(add(job.weight + "_scale", job.q.scale, true));
        if (!job.q.zero_point.empty()) dq.add_input(add(job.weight + "_zero_point", job.q.zero_point, true));
        dq.add_output(job.weight);
        set_attr(&dq, "axis", job.q.axis);
        if (job.q.block_size > 0) set_attr(&dq, "block_size", job.q.block_size);
        dq_nodes.push_back(std::move(dq));
        continue;
      }
      // MatMul / Gemm -> com.microsoft.MatMulNBits, quantized as [N, K] in blocks along K.
      any_nbits = true;
      onnx::NodeProto& n = *g->mutable_node(job.consumers[0]);
      const int64_t N = job.q.shape()[0], K = job.q.shape()[1];
      NBitsWeight nb = to_matmul_nbits(job.q);
      std::string bias;
      if (n.op_type() == "Gemm" && n.input_size() > 2 && !n.input(2).empty()) {
        Tensor c = load(n.input(2));
        std::vector<double> values = c.to_doubles();
        for (double& v : values) v *= attr_float(n, "beta", 1.0f);
        bias = add(n.input(2) + "_bias", Tensor::from_doubles(job.q.value_dtype(), {N}, values), false);
        if (--uses[n.input(2)] == 0) dropped.insert(n.input(2));
      }
      std::vector<std::string> inputs = {n.input(0), add(job.weight + "_q4", nb.b, true),
                                         add(job.weight + "_scale", nb.scales, true)};
      inputs.push_back(job.q.zero_point.empty() ? "" : add(job.weight + "_zero_point", nb.zero_points, true));
      inputs.push_back("");  // g_idx
      inputs.push_back(bias);
      while (inputs.back().empty()) inputs.pop_back();
      n.set_op_type("MatMulNBits");
      n.set_domain("com.microsoft");
      n.clear_input();
      for (const auto& in : inputs) n.add_input(in);
      n.clear_attribute();
      set_attr(&n, "K", K);
      set_attr(&n, "N", N);
      set_attr(&n, "bits", int64_t(4));
      set_attr(&n, "block_size", opt_.block_size);
    }
    correct_biases(*g, chosen);
    if (any_dq) out.set_ir_version(std::max<int64_t>(out.ir_version(), kInt4IrVersion));
    if (any_nbits) set_opset(&out, "com.microsoft", 1);
    // DequantizeLinear nodes read only initializers: put them first, keeping topological order.
    auto* nodes = g->mutable_node();
    for (auto& n : dq_nodes) *nodes->Add() = std::move(n);
    std::rotate(nodes->begin(), nodes->end() - dq_nodes.size(), nodes->end());
    auto* inits = g->mutable_initializer();
    inits->erase(std::remove_if(inits->begin(), inits->end(),
                                [&](const onnx::TensorProto& t) { return dropped.count(t.name()) != 0; }),
                 inits->end());
    return out;
  }

  // Takes each chosen layer's mean output shift (bias_correction.h) off its bias, once the input
  // means have been measured. Nodes of `g` still sit at their indices in model_, and each correction
  // may add a node after its layer, so layers are corrected from the last to the first.
  void correct_biases(onnx::GraphProto& g, const std::vector<bool>& chosen) {
    if (input_means_.empty()) return;
    std::vector<std::pair<int, size_t>> layers;
    for (size_t j = 0; j < jobs_.size(); ++j)
      if (chosen[j])
        for (int c : jobs_[j].consumers) layers.push_back({c, j});
    std::sort(layers.rbegin(), layers.rend());
    report_.bias_corrected = 0;
    for (auto [node, j] : layers) {
      const onnx::NodeProto& layer = graph().node(node);
      if (!input_means_.count(layer.input(0))) continue;
      std::vector<double> shift = output_shift(layer, jobs_[j].rounding, input_means_.at(layer.input(0)));
      for (double& v : shift) v = -v;
      Shape shape = {static_cast<int64_t>(shift.size())};
      if (layer.op_type() == "Conv" || layer.op_type() == "ConvTranspose") shape.resize(jobs_[j].rounding.rank(), 1);
      add_output_shift(g, node, Tensor::from_doubles(jobs_[j].q.value_dtype(), shape, shift), base_dir_);
      ++report_.bias_corrected;
    }
  }

  // Keeps in float the weights whose int4 error hurts the output most for the bytes they save: each
  // weight's damage is 1 - the output cosine with it alone in int4; weights go back to float in
  // order of damage per float byte (a small first conv or classifier head before a large hidden
  // layer that hurts a little more) until the whole model meets opt_.min_cosine on the calibration
  // data. Then each weight kept float, the largest first, is tried in int4 again: a step taken early
  // may have been made unneeded by later ones. Every step is measured, not assumed.
  std::vector<bool> calibrate() {
    CalibrationRunner runner(read_calibration_data(opt_.calibration_data), opt_.calibration_backend, base_dir_);
    report_.calibration_sets = static_cast<int>(runner.sets());
    std::vector<ChannelProbe> probes;
    if (opt_.bias_correction) {
      std::set<std::string> probed;
      for (const Job& job : jobs_)
        for (int c : job.consumers)
          if (!initializer(graph().node(c).input(0)) && probed.insert(graph().node(c).input(0)).second)
            probes.push_back(input_probe(graph().node(c), job.q.value_dtype()));
    }
    CalibrationRun fp32 = runner.run(model_, probes);
    for (size_t p = 0; p < probes.size(); ++p) {
      if (fp32.values_per_channel[p] >= kMinValuesPerMean) {
        input_means_[probes[p].value] = std::move(fp32.channel_means[p]);
        continue;
      }
      for (const Job& job : jobs_)
        for (int c : job.consumers)
          if (graph().node(c).input(0) == probes[p].value)
            report_.notes.push_back(label(graph().node(c)) + " is not bias-corrected: the calibration data give " +
                                    std::to_string(fp32.values_per_channel[p]) +
                                    " values per input channel, fewer than " + std::to_string(kMinValuesPerMean));
    }
    const std::vector<OutputSet>& reference = fp32.outputs;
    auto cosine_of = [&](const std::vector<bool>& chosen) {
      return worst_cosine(runner.run(apply(chosen)).outputs, reference);
    };

    std::vector<size_t> order(jobs_.size());
    std::vector<double> damage_per_byte(jobs_.size());
    for (size_t j = 0; j < jobs_.size(); ++j) {
      std::vector<bool> alone(jobs_.size(), false);
      alone[j] = true;
      jobs_[j].report.cosine_alone = cosine_of(alone);
      damage_per_byte[j] = (1.0 - *jobs_[j].report.cosine_alone) / std::max<int64_t>(1, jobs_[j].report.float_bytes);
      order[j] = j;
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return damage_per_byte[a] > damage_per_byte[b]; });
    std::vector<bool> chosen(jobs_.size(), true);
    std::vector<size_t> kept;
    double cosine = cosine_of(chosen);
    for (size_t next = 0; cosine < opt_.min_cosine && next < order.size(); ++next) {
      chosen[order[next]] = false;
      kept.push_back(order[next]);
      cosine = cosine_of(chosen);
    }
    std::stable_sort(kept.begin(), kept.end(),
                     [&](size_t a, size_t b) { return jobs_[a].report.float_bytes > jobs_[b].report.float_bytes; });
    for (size_t j : kept) {
      chosen[j] = true;
      double with_j = cosine_of(chosen);
      if (with_j >= opt_.min_cosine) cosine = with_j;
      else chosen[j] = false;
    }
    report_.cosine = cosine;
    if (!opt_.validation_data.empty()) {
      CalibrationRunner validation(read_calibration_data(opt_.validation_data), opt_.calibration_backend, base_dir_);
      report_.validation_cosine = worst_cosine(validation.run(apply(chosen)).outputs, validation.run(model_).outputs);
    }
    return chosen;
  }

  onnx::ModelProto& model_;
  std::string base_dir_;
  const QuantizeOptions& opt_;
  std::vector<Job> jobs_;
  std::map<std::string, std::vector<double>> input_means_;  // per layer input, measured for bias correction
  QuantizeReport report_;
};

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

}  // namespace

void validate(const QuantizeOptions& opt) {
  check(opt.format == "dq" || opt.format == "matmulnbits", ErrorKind::Invalid,
        "--format '" + opt.format + "' is not one of: dq, matmulnbits");
  check(opt.block_size >= 2, ErrorKind::Invalid, "--block-size " + std::to_string(opt.block_size) + " must be >= 2");
  check(opt.format != "matmulnbits" || (opt.block_size >= 16 && (opt.block_size & (opt.block_size - 1)) == 0),
        ErrorKind::Invalid,
        "--block-size " + std::to_string(opt.block_size) + ": MatMulNBits needs a power of two >= 16");
  check(opt.validation_data.empty() || !opt.calibration_data.empty(), ErrorKind::Invalid,
        "--validation-data needs --calibration-data");
  check(opt.min_cosine > 0 && opt.min_cosine <= 1, ErrorKind::Invalid,
        "--min-cosine " + std::to_string(opt.min_cosine) + " must lie in (0, 1]");
}

QuantizeReport quantize_model(onnx::ModelProto& model, const std::string& base_dir, const QuantizeOptions& options) {
  validate(options);
  onnx::ModelProto work = model;
  QuantizeReport report = Quantizer(work, base_dir, options).run();
  model.Swap(&work);
  return report;
}

QuantizeReport quantize_file(const std::string& input, const std::string& output, const QuantizeOptions& options) {
  validate(options);
  fs::path out(output);
  fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  std::error_code ec;
  check(fs::is_directory(dir, ec), ErrorKind::Io, "output folder '" + dir.string() + "' does not exist");
  check(!fs::is_directory(out, ec), ErrorKind::Io, "output '" + output + "' is a folder");
  onnx::ModelProto model = read_model_file(input);
  const std::string base_dir = fs::path(input).parent_path().empty() ? "." : fs::path(input).parent_path().string();
  inline_external_data(model, base_dir);
  QuantizeReport report = quantize_model(model, base_dir, options);
  write_atomically(model, output);
  return report;
}

}  // namespace tetra::quantize
