#include "runtime/model.h"

#include "importer/epilogue_fusion.h"
#include "importer/error.h"
#include "runtime/reference_evaluator.h"

namespace tetra {

Graph load_model(const std::string& path, const std::map<std::string, Shape>& input_shapes, const LoadOptions& options) {
  Graph graph = load_onnx(path, options);
  std::vector<std::string> unsupported = unsupported_nodes(graph);
  if (!unsupported.empty()) {
    std::string list;
    for (const std::string& s : unsupported) list += "\n  " + s;
    fail(ErrorKind::Unsupported, "'" + path + "' uses " + std::to_string(unsupported.size()) +
                                     " unsupported operator node(s):" + list);
  }
  infer_shapes(graph, input_shapes);
  if (options.fuse_epilogues) {
    size_t nodes = graph.nodes.size();
    fuse_epilogues(graph);  // needs the shapes just inferred
    if (graph.nodes.size() != nodes) infer_shapes(graph, input_shapes);  // each fused step removed a node
  }
  return graph;
}

}  // namespace tetra
