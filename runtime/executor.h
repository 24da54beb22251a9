// A model prepared for one backend: every node is bound to a kernel once, then the model runs many
// times. The reference backend binds every node to its reference kernel; the Halide backend binds
// the nodes it compiles (tetra.QMatMul, ...) to Halide kernels and the rest to the reference
// kernels, and says so per node.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "importer/graph.h"
#include "runtime/reference_evaluator.h"

namespace tetra {

enum class Backend { Reference, Halide };
Backend parse_backend(const std::string& name);  // "reference" | "halide"; fails on others
std::string backend_name(Backend backend);

class ScheduleSource;  // runtime/schedule_source.h
class KernelSource;    // runtime/kernel_source.h
struct MemoryPlan;     // runtime/memory_plan.h

struct ExecutorOptions {
  Backend backend = Backend::Halide;
  int threads = 0;                         // Halide's thread pool size; 0: one per core
  const ScheduleSource* schedules = nullptr;  // tuned schedules; must outlive the executor
  std::string kernel_cache{};  // folder of compiled kernels reused across processes; "" compiles in memory
  std::string target{};        // what the kernels are compiled for (dsl::parse_target; this machine must
                               // run it); "": this machine
};

// The opt-in int8-activation mode (ONNX Runtime's MatMulNBits accuracy_level 4): the attribute
// int8_activations = 1 on a tetra.QMatMul node makes its Halide kernel quantize A to int8 per k-block
// (dsl::QMatMulWorkload::int8_activations) where the target has int8 dot products; elsewhere, and on
// the reference backend, the node stays exact. mark_int8_activations() marks every tetra.QMatMul and
// returns how many it marked. Convs stay float32.
inline constexpr const char* kInt8ActivationsAttr = "int8_activations";
int mark_int8_activations(Graph& graph);
// The opt-in float16-activation mode: f16_activations = 1 on a tetra.QMatMul node lets its kernel round A
// to float16 and multiply it in float16 pairs with float32 sums (dsl::QMatMulWorkload::f16_activations,
// v_dot2_f32_f16 on AMD) where the target has such kernels (GPUs); elsewhere the node stays exact.
// Activations past the float16 range (65504) become infinite. mark_f16_activations() marks every
// tetra.QMatMul and returns how many.
inline constexpr const char* kF16ActivationsAttr = "f16_activations";
int mark_f16_activations(Graph& graph);

// What a run asks of its int4 MatMuls' activations: exact (the default), or one of the opt-ins above.
enum class ActivationOptIn { Exact, Int8, Float16 };
// Marks the graph's int4 MatMuls for `opt_in`; returns how many (0 for Exact).
int mark_activation_opt_in(Graph& graph, ActivationOptIn opt_in);

// What ran a node, for `tetra inspect`, `run --explain` and `bench`.
struct KernelInfo {
  std::string node;     // node label
  std::string backend;  // "halide" or "reference"
  std::string detail;   // the schedule used, or why the node fell back to the reference kernel
  double compile_ms = 0;
  // Copies of an activation into another layout, inside this kernel, per run (im2col's channels-last
  // input, say). There are none between kernels: every kernel reads and writes row-major NCHW.
  int layout_conversions = 0;
};

// Where a kernel writes its outputs. The executor's memory plan gives each output a place: a view
// into one arena that no other live value uses while this one is live (runtime/memory_plan.h). A
// kernel that writes its output whole takes its storage with make(); kernels that return views of an
// input, or that have no place, get fresh storage.
struct OutputPlaces {
  std::vector<Tensor> places;  // by output index; empty tensors where there is none

  // Output i's storage: its place when it has this element type and byte size, else fresh storage.
  Tensor make(size_t i, DType dtype, Shape shape) const;
};

// One node's executable form.
class NodeKernel {
 public:
  virtual ~NodeKernel() = default;
  virtual std::vector<Tensor> run(const std::vector<Tensor>& inputs) = 0;
  virtual KernelInfo info() const = 0;
  // The memory plan's places for this node's outputs (set once per plan). A kernel that wraps others
  // passes them on to whichever writes the outputs.
  virtual void set_places(OutputPlaces places) { places_ = std::move(places); }

 protected:
  OutputPlaces places_;
};

class Executor {
 public:
  // The reference backend, or the Halide backend compiling its kernels in this process
  // (runtime/jit_kernel_source.cpp, which needs libHalide).
  Executor(const Graph& graph, const ExecutorOptions& options);
  // The Halide backend's kernels with code from `kernels` (a model library's table, say), reference
  // kernels for the nodes it has none for; nullptr: reference kernels only.
  Executor(const Graph& graph, std::shared_ptr<KernelSource> kernels);
  ~Executor();

  // Validates the inputs like run_reference and runs every node's kernel. When `node_ms` is given
  // it receives each node's wall time in milliseconds, in graph order.
  TensorMap run(const TensorMap& inputs, std::vector<double>* node_ms = nullptr);

  const Graph& graph() const { return graph_; }
  std::vector<KernelInfo> kernels() const;

  // The memory plan in use (runtime/memory_plan.h), for `bench`: none before the first run.
  struct MemoryStats {
    int64_t arena_bytes = 0;  // the arena holding every planned intermediate
    int64_t value_bytes = 0;  // those intermediates' bytes without sharing
    int concats_in_place = 0;
    bool predicted = false;  // made from the inferred values before running, not from a run
  };
  MemoryStats memory_stats() const;

 private:
  // Every value's type for these inputs' shapes: inferred at the first run and again only when the
  // input shapes change (inference costs as much as a small kernel per node). Sets `rebound` when it
  // inferred them anew.
  const std::map<std::string, ValueInfo>& values_for(const TensorMap& inputs, bool* rebound);
  void drop_memory_plan();
  void use_memory_plan(MemoryPlan plan, bool predicted);

  Graph graph_;
  std::shared_ptr<KernelSource> source_;  // outlives the kernels that hold references to it
  std::vector<std::unique_ptr<NodeKernel>> kernels_;
  std::vector<std::vector<std::string>> free_after_;  // per node: the intermediates it reads last
  bool bound_ = false;
  std::vector<Shape> bound_shapes_;                   // the input shapes values_ was inferred for
  std::map<std::string, ValueInfo> values_;
  // Made before the first run at these input shapes from the inferred values, or, where they are not
  // all known or the plan proved wrong, from a run that records what every node wrote.
  std::unique_ptr<MemoryPlan> memory_plan_;
  bool plan_from_a_run_ = false;
  bool plan_predicted_ = false;
};

// The reference kernel of one node (every backend's fallback).
std::unique_ptr<NodeKernel> make_reference_kernel(const Node& node, const std::string& why = "");

// The Halide kernel for `node`, or nullptr with `why_not` set when the Halide backend does not
// compile this node (it then falls back to the reference kernel).
std::unique_ptr<NodeKernel> make_halide_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                               std::string* why_not);

}  // namespace tetra
