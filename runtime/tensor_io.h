// Reading and writing tensors as files: ONNX TensorProto (.pb) and NumPy (.npy).
#pragma once
#include <string>

#include "importer/tensor.h"

namespace tetra {

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

NamedTensor read_tensor_pb(const std::string& path);
// Writes atomically (temporary file + rename), so a failure never leaves a partial file.
void write_tensor_pb(const std::string& path, const Tensor& tensor, const std::string& name);
Tensor read_npy(const std::string& path);
// Reads .pb or .npy by extension.
Tensor read_tensor_file(const std::string& path);

}  // namespace tetra
