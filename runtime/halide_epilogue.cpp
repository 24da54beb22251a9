// The epilogue steps a Halide node kernel leaves to run after it (halide_epilogue.h).
#include "runtime/halide_epilogue.h"

#include "runtime/epilogue.h"
#include "runtime/halide_backend.h"

namespace tetra {

EpilogueSteps::EpilogueSteps(const Node& node, const Graph& graph, KernelSource& source, size_t first_step)
    : node_(node), first_step_(first_step) {
  for (size_t s = first_step; s < node.epilogue.size(); ++s) {
    // The running value takes the name of the fused node's output, which has its type and shape.
    auto step = std::make_unique<Node>(node.epilogue[s]);
    step->inputs[0] = node.outputs[0];
    std::string why_not;
    std::unique_ptr<NodeKernel> kernel = make_halide_elementwise_kernel(*step, graph, source, &why_not);
    kernels_.push_back(kernel ? std::move(kernel) : make_reference_kernel(node.epilogue[s], why_not));
    steps_.push_back(std::move(step));
  }
}

Tensor EpilogueSteps::apply(Tensor y, const std::vector<Tensor>& inputs) {
  for (size_t k = 0; k < kernels_.size(); ++k)
    y = kernels_[k]->run(epilogue_step_args(node_, node_.epilogue[first_step_ + k], y, inputs)).at(0);
  return y;
}

bool EpilogueSteps::take_places(OutputPlaces& places) {
  if (kernels_.empty()) return false;
  kernels_.back()->set_places(std::move(places));
  return true;
}

double EpilogueSteps::compile_ms() const {
  double ms = 0;
  for (const auto& k : kernels_) ms += k->info().compile_ms;
  return ms;
}

std::string EpilogueSteps::describe() const { return describe_epilogue(node_, first_step_); }

// "SCHEDULE; in the kernel: +residual Gelu; after it: Mul", for KernelInfo::detail.
std::string kernel_detail(const std::string& schedule, const dsl::OutputEpilogue& in_kernel,
                          const EpilogueSteps& after) {
  std::string out = schedule;
  if (!in_kernel.empty()) out += "; in the kernel: " + in_kernel.describe();
  if (std::string steps = after.describe(); !steps.empty()) out += "; after it: " + steps;
  return out;
}

namespace {

// Runs a kernel that applies the node's epilogue steps before `first_step`, then the others.
class WithEpilogue : public NodeKernel {
 public:
  WithEpilogue(const Node& node, const Graph& graph, KernelSource& source, std::unique_ptr<NodeKernel> inner,
               size_t first_step)
      : inner_(std::move(inner)), epilogue_(node, graph, source, first_step) {}
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    std::vector<Tensor> out = inner_->run(inputs);
    out[0] = epilogue_.apply(std::move(out[0]), inputs);
    return out;
  }
  void set_places(OutputPlaces places) override {
    if (!epilogue_.take_places(places)) inner_->set_places(std::move(places));
  }
  KernelInfo info() const override {
    KernelInfo info = inner_->info();
    info.detail = kernel_detail(info.detail, {}, epilogue_);
    info.compile_ms += epilogue_.compile_ms();
    return info;
  }

 private:
  std::unique_ptr<NodeKernel> inner_;
  EpilogueSteps epilogue_;
};

}  // namespace

std::unique_ptr<NodeKernel> with_epilogue(const Node& node, const Graph& graph, KernelSource& source,
                                          std::unique_ptr<NodeKernel> inner, size_t first_step) {
  return std::make_unique<WithEpilogue>(node, graph, source, std::move(inner), first_step);
}

}  // namespace tetra
