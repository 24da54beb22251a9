// The executor's static memory plan: every intermediate of a graph gets a place in one arena, made
// once from a first run's observed sizes and reused while the input shapes stay the same.
//
// Values that are views of one storage (Reshape's output of its input, say) form one buffer, live
// from its first writer to its last reader. Buffers live at a common node never overlap; the others
// share bytes, placed largest first at the lowest offset that fits (the greedy-by-size order of
// TFLite's and ONNX Runtime's planners). A Concat whose inputs are contiguous slices of its output
// (every dim before the axis is 1) has them placed there, so their producers write straight into it
// and the Concat copies nothing. Graph inputs, outputs and initializers, and the values that share
// storage with them, stay out of the arena.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "importer/graph.h"
#include "runtime/executor.h"

namespace tetra {

// A buffer to place: its bytes and the nodes (by index, inclusive) during which it is live.
struct LiveBuffer {
  int64_t bytes = 0;
  size_t first = 0, last = 0;
};

// Byte offsets for `buffers` in one arena, aligned to `alignment`, such that two buffers live at a
// common node never overlap.
struct ArenaLayout {
  std::vector<int64_t> offsets;
  int64_t bytes = 0;  // the arena's size
};
ArenaLayout lay_out_buffers(const std::vector<LiveBuffer>& buffers, int64_t alignment = 64);

// What one run showed about a value a node wrote.
struct WrittenValue {
  DType dtype = DType::Undefined;
  Shape shape;
  int64_t bytes = 0;
  // The input or earlier output of the same node whose storage this value is a view of; "" when it
  // has storage of its own.
  std::string view_of;
};
using RunObservation = std::map<std::string, WrittenValue>;

struct MemoryPlan {
  Tensor arena;                            // the storage of every planned value
  std::map<std::string, int64_t> address;  // planned value -> byte offset of its storage in the arena
  std::vector<OutputPlaces> places;        // per node: where its outputs go
  int64_t value_bytes = 0;                 // the planned values' bytes without sharing (views counted once)
  int concats_in_place = 0;                // Concat nodes whose inputs are all placed in their output

  bool empty() const { return address.empty(); }
};

// The plan for `graph` (whose nodes, in order, wrote `seen` in one run).
MemoryPlan plan_memory(const Graph& graph, const RunObservation& seen);

// What a run on `inputs` will write, from the inferred `values` and the operator table's views
// (OpDef::output_views_input), so that the first run already runs on the plan; nullopt when a value's
// shape is not known before running.
std::optional<RunObservation> predicted_writes(const Graph& graph, const std::map<std::string, ValueInfo>& values,
                                               const TensorMap& inputs);

}  // namespace tetra
