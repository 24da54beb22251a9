#include "runtime/model.h"

#include "importer/decomposed_ops.h"
#include "importer/epilogue_fusion.h"
#include "importer/error.h"
#include "runtime/reference_evaluator.h"

namespace tetra {

namespace {
Graph prepare(Graph graph, const std::string& what, const std::map<std::string, Shape>& input_shapes,
              const LoadOptions& options) {
  std::vector<std::string> unsupported = unsupported_nodes(graph);
  if (!unsupported.empty()) {
    std::string list;
    for (const std::string& s : unsupported) list += "\n  " + s;
    fail(ErrorKind::Unsupported, what + " uses " + std::to_string(unsupported.size()) +
                                     " unsupported operator node(s):" + list);
  }
  infer_shapes(graph, input_shapes);
  // Both passes need the shapes just inferred; the operators put back can join epilogues.
  if (options.recognise_decomposed && recognise_decomposed_ops(graph) > 0) infer_shapes(graph, input_shapes);
  if (options.fuse_epilogues) {
    size_t nodes = graph.nodes.size();
    bool rewritten = hoist_matmul_scales(graph) + fold_conv_transpose_batchnorms(graph) + fold_pads_into_convs(graph) > 0;
    if (rewritten) infer_shapes(graph, input_shapes);  // fuse_attention reads the new values' shapes
    rewritten = fuse_attention(graph) > 0 || rewritten;
    rewritten = fold_attention_layouts(graph) > 0 || rewritten;
    fuse_epilogues(graph);  // needs the shapes just inferred
    if (rewritten || graph.nodes.size() != nodes) infer_shapes(graph, input_shapes);  // each fused step removed a node
  }
  return graph;
}
}  // namespace

Graph load_model(const std::string& path, const std::map<std::string, Shape>& input_shapes, const LoadOptions& options) {
  return prepare(load_onnx(path, options), "'" + path + "'", input_shapes, options);
}

Graph load_model(const onnx::ModelProto& model, const std::string& base_dir, const std::string& what,
                 const std::map<std::string, Shape>& input_shapes, const LoadOptions& options) {
  return prepare(import_model(model, base_dir, options), what, input_shapes, options);
}

}  // namespace tetra
