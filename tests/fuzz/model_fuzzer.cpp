// libFuzzer harness: bytes -> ONNX model -> import -> shape inference -> epilogue fusion, as
// `tetra inspect` and `tetra run` load a model. Any tetra::Error is a refusal, which is fine; a crash,
// another exception, a leak, an allocation past the fuzzer's limit or a timeout is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include <onnx/onnx_pb.h>

#include "importer/epilogue_fusion.h"
#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/reference_evaluator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    onnx::ModelProto model = tetra::parse_model(std::string(reinterpret_cast<const char*>(data), size), "input");
    tetra::Graph graph = tetra::import_model(model, "", {});  // no folder: external data is refused
    if (!tetra::unsupported_nodes(graph).empty()) return 0;
    tetra::infer_shapes(graph);
    tetra::fuse_epilogues(graph);
    tetra::infer_shapes(graph);
  } catch (const tetra::Error&) {
  }
  return 0;
}
