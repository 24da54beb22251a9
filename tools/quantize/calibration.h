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

// Runs models on the calibration inputs.
class CalibrationRunner {
 public:
  CalibrationRunner(std::vector<InputSet> inputs, Backend backend, std::string base_dir);
  // The model's outputs on every input set, in model order. Fails naming the set whose input count
  // does not match the model.
  std::vector<OutputSet> run(const onnx::ModelProto& model) const;
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
