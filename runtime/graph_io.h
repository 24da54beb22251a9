// The graph IR as bytes: what a model library compiled by `tetra compile` carries instead of the ONNX
// model (it has no protobuf). Holds the graph after fusion and shape inference, int4 weights still
// packed. Little-endian, versioned; reading checks every length against the bytes left, so a
// truncated or corrupt blob is an error, never a crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "importer/graph.h"

namespace tetra {

std::vector<uint8_t> serialize_graph(const Graph& graph);
// Throws tetra::Error (kind Malformed) naming `what` (a file or library) when the bytes are not a graph.
Graph deserialize_graph(const uint8_t* data, size_t size, const std::string& what);

// FNV-1a over the bytes: the checksum a model library keeps of a weights file it reads.
uint64_t fnv1a64(const uint8_t* data, size_t size);

}  // namespace tetra
