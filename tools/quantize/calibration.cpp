#include "tools/quantize/calibration.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "importer/error.h"
#include "runtime/model.h"
#include "runtime/tensor_io.h"

namespace tetra::quantize {
namespace fs = std::filesystem;

namespace {

InputSet read_input_set(const fs::path& dir) {
  InputSet set;
  for (int i = 0;; ++i) {
    fs::path file = dir / ("input_" + std::to_string(i) + ".pb");
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) break;
    set.push_back(read_tensor_pb(file.string()).tensor);
  }
  return set;
}

}  // namespace

std::vector<InputSet> read_calibration_data(const std::string& dir) {
  std::error_code ec;
  check(fs::is_directory(dir, ec), ErrorKind::Io, "calibration data folder '" + dir + "' does not exist");
  std::vector<fs::path> set_dirs;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory() && entry.path().filename().string().rfind("test_data_set_", 0) == 0)
      set_dirs.push_back(entry.path());
  std::sort(set_dirs.begin(), set_dirs.end());
  if (set_dirs.empty()) set_dirs.push_back(dir);
  std::vector<InputSet> sets;
  for (const fs::path& d : set_dirs) {
    InputSet set = read_input_set(d);
    check(!set.empty(), ErrorKind::Io,
          "calibration data folder '" + d.string() + "' holds no input_0.pb (expected test_data_set_*/input_<i>.pb)");
    if (!sets.empty() && set.size() != sets[0].size())
      fail(ErrorKind::Invalid, "calibration data set '" + d.string() + "' has " + std::to_string(set.size()) +
                                   " inputs, the first set " + std::to_string(sets[0].size()));
    sets.push_back(std::move(set));
  }
  return sets;
}

CalibrationRunner::CalibrationRunner(std::vector<InputSet> inputs, Backend backend, std::string base_dir)
    : inputs_(std::move(inputs)), backend_(backend), base_dir_(std::move(base_dir)) {}

CalibrationRun CalibrationRunner::run(const onnx::ModelProto& model, const std::vector<ChannelProbe>& probes) const {
  // Probes are read as extra graph outputs of a copy; the executor keeps a graph output's value
  // even where it would otherwise fuse it away.
  onnx::ModelProto probed;
  const onnx::ModelProto* to_run = &model;
  if (!probes.empty()) {
    probed = model;
    std::set<std::string> outputs;
    for (const auto& o : model.graph().output()) outputs.insert(o.name());
    for (const ChannelProbe& p : probes) {
      if (!outputs.insert(p.value).second) continue;  // already an output
      onnx::ValueInfoProto* out = probed.mutable_graph()->add_output();
      out->set_name(p.value);
      out->mutable_type()->mutable_tensor_type()->set_elem_type(static_cast<int32_t>(p.dtype));
    }
    to_run = &probed;
  }
  Graph graph = load_model(*to_run, base_dir_, "the model being calibrated");
  ExecutorOptions options;
  options.backend = backend_;
  Executor executor(graph, options);
  const size_t model_outputs = size_t(model.graph().output_size());
  CalibrationRun result;
  result.channel_means.resize(probes.size());
  result.values_per_channel.assign(probes.size(), 0);
  for (size_t s = 0; s < inputs_.size(); ++s) {
    const InputSet& set = inputs_[s];
    check(set.size() == graph.inputs.size(), ErrorKind::Invalid,
          "calibration data set " + std::to_string(s) + " has " + std::to_string(set.size()) +
              " inputs; the model takes " + std::to_string(graph.inputs.size()));
    TensorMap bound;
    for (size_t i = 0; i < set.size(); ++i) bound[graph.inputs[i].name] = set[i];
    TensorMap values = executor.run(bound);
    OutputSet out;
    for (size_t o = 0; o < model_outputs; ++o) out.push_back(values.at(graph.outputs[o].name));
    result.outputs.push_back(std::move(out));
    for (size_t p = 0; p < probes.size(); ++p) {
      auto found = values.find(probes[p].value);
      check(found != values.end(), ErrorKind::Invalid,
            "calibration probe '" + probes[p].value + "' is not a value the model computes");
      const Tensor& t = found->second;
      const int64_t rank = static_cast<int64_t>(t.shape().size());
      const int64_t axis = probes[p].channel_axis < 0 ? probes[p].channel_axis + rank : probes[p].channel_axis;
      check(axis >= 0 && axis < rank, ErrorKind::Invalid,
            "calibration probe '" + probes[p].value + "' has rank " + std::to_string(rank) + ", no channel axis " +
                std::to_string(probes[p].channel_axis));
      int64_t channels = t.shape()[axis], inner = 1;
      for (int64_t d = axis + 1; d < rank; ++d) inner *= t.shape()[d];
      std::vector<double>& sums = result.channel_means[p];
      if (sums.empty()) sums.assign(channels, 0.0);
      check(static_cast<int64_t>(sums.size()) == channels, ErrorKind::Invalid,
            "calibration probe '" + probes[p].value + "' changes its channel count between data sets");
      for (int64_t i = 0; i < t.size(); ++i) sums[(i / inner) % channels] += t.get(i);
      result.values_per_channel[p] += channels ? t.size() / channels : 0;
    }
  }
  for (size_t p = 0; p < probes.size(); ++p)
    for (double& sum : result.channel_means[p])
      sum /= static_cast<double>(std::max<int64_t>(1, result.values_per_channel[p]));
  return result;
}

double worst_cosine(const std::vector<OutputSet>& got, const std::vector<OutputSet>& expected) {
  double worst = 1.0;
  for (size_t s = 0; s < expected.size(); ++s) {
    double dot = 0, a2 = 0, b2 = 0;
    for (size_t o = 0; o < expected[s].size(); ++o)
      for (int64_t i = 0; i < expected[s][o].size(); ++i) {
        double a = got[s][o].get(i), b = expected[s][o].get(i);
        dot += a * b;
        a2 += a * a;
        b2 += b * b;
      }
    // Two all-zero outputs agree; one all-zero output against another does not.
    double cosine = a2 == 0 && b2 == 0 ? 1.0 : (a2 == 0 || b2 == 0 ? 0.0 : dot / std::sqrt(a2 * b2));
    if (!std::isfinite(cosine)) cosine = 0.0;
    worst = std::min(worst, cosine);
  }
  return worst;
}

}  // namespace tetra::quantize
