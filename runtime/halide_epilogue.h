// The epilogue steps of a fused node that its Halide kernel leaves to run after it: each on a Halide
// elementwise kernel where there is one, else on the step's reference kernel. (runtime/epilogue.h
// decides which steps a kernel applies in its output stage.)
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dsl/core/output_epilogue.h"
#include "runtime/executor.h"
#include "runtime/kernel_source.h"

namespace tetra {

// The steps of `node`'s epilogue from `first_step` on, ready to run.
class EpilogueSteps {
 public:
  EpilogueSteps(const Node& node, const Graph& graph, KernelSource& source, size_t first_step);

  // `y` through every step; `inputs` are the fused node's.
  Tensor apply(Tensor y, const std::vector<Tensor>& inputs);

  // Passes the fused node's output places to the last step (the earlier steps' results are
  // temporaries); false when there are no steps, and the kernel before them writes the output.
  bool take_places(OutputPlaces& places);

  double compile_ms() const;
  std::string describe() const;

 private:
  const Node& node_;
  size_t first_step_;
  std::vector<std::unique_ptr<Node>> steps_;  // the kernels hold references to them
  std::vector<std::unique_ptr<NodeKernel>> kernels_;
};

// "SCHEDULE; in the kernel: +residual Gelu; after it: Mul", for KernelInfo::detail.
std::string kernel_detail(const std::string& schedule, const dsl::OutputEpilogue& in_kernel,
                          const EpilogueSteps& after);

// `inner`, which applies a fused node's epilogue steps before `first_step`, then the remaining ones.
std::unique_ptr<NodeKernel> with_epilogue(const Node& node, const Graph& graph, KernelSource& source,
                                          std::unique_ptr<NodeKernel> inner, size_t first_step);

}  // namespace tetra
