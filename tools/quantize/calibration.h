// Calibration for tetra quantize: inputs in the ONNX test layout, runs of candidate models on
// tetra's own executor, and how close a candidate's outputs stay to the fp32 model's.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/executor.h"

namespace onnx {
class ModelProto;
}

namespace tetra::quantize {

// One set of model inputs, bound by position.
using InputSet = std::vector<Tensor>;
using OutputSet = std::vector<Tensor>;

// Reads DIR/test_data_set_*/input_<i>.pb (sets in name order), or DIR/input_<i>.pb as one set.
// Fails naming the folder when it holds none, or the set whose input count differs.
std::vector<InputSet> read_calibration_data(const std::string& dir);

// An intermediate value whose mean per channel a calibration run measures.
struct ChannelProbe {
  std::string value;
  int64_t channel_axis = 1;  // counted from the end when negative
  DType dtype = DType::Float32;
};

struct CalibrationRun {
  std::vector<OutputSet> outputs;                  // per input set, in model order
  std::vector<std::vector<double>> channel_means;  // per probe, over every element of every set
  std::vector<int64_t> values_per_channel;         // per probe: how many values each mean averages
};

// Runs models on the calibration inputs.
class CalibrationRunner {
 public:
  CalibrationRunner(std::vector<InputSet> inputs, Backend backend, std::string base_dir);
  // The model's outputs on every input set, and the probes' channel means. Fails naming the set
  // whose input count does not match the model, or the probe the model does not compute.
  CalibrationRun run(const onnx::ModelProto& model, const std::vector<ChannelProbe>& probes = {}) const;
  size_t sets() const { return inputs_.size(); }

 private:
  std::vector<InputSet> inputs_;
  Backend backend_;
  std::string base_dir_;
};

// The cosine similarity of `got` and `expected` (every output of a set flattened into one vector),
// for the set where it is lowest.
double worst_cosine(const std::vector<OutputSet>& got, const std::vector<OutputSet>& expected);

}  // namespace tetra::quantize
