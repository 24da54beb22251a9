// The reference evaluator: plain per-node loops, the oracle every faster backend is checked against.
#pragma once
#include <map>
#include <string>

#include "importer/graph.h"

namespace tetra {

using TensorMap = std::map<std::string, Tensor>;

// Infers every value's dtype and shape. `input_shapes` binds graph inputs (dynamic dims) to concrete
// shapes; constants are folded where that makes shapes known. Fails naming the node at fault.
void infer_shapes(Graph& graph, const std::map<std::string, Shape>& input_shapes = {});

// Checks that the inputs match the graph (names, dtypes, ranks, known dims), then runs every node
// with its reference kernel and returns the graph outputs by name.
TensorMap run_reference(const Graph& graph, const TensorMap& inputs);

// Checks the inputs against the graph (every input given, dtypes, shapes) and returns the graph
// with every shape inferred for them, so a mismatch is reported naming its node before anything runs.
Graph bind_inputs(const Graph& graph, const TensorMap& inputs);

// The operator table's entry for a node; fails naming the node when there is none.
struct OpDef;
const OpDef& op_for(const Node& node);

// Ops in the graph that no kernel handles, as "Op 'name'" labels.
std::vector<std::string> unsupported_nodes(const Graph& graph);

}  // namespace tetra
