// Wide loads: a thread's 4 (else 2) 32-bit loads at adjacent, aligned addresses become one 16-byte
// (8-byte) vector load.
//
// A GPU moves memory fastest in wide per-lane accesses (a copy kernel loads 16 bytes a lane). A thread of
// the split-k GEMV that sums thread_n = 4 adjacent columns reads 4 adjacent weight words and 4 adjacent
// scales at each k; LLVM's load-store vectorizer merges only some of them (after unrolling it no longer
// sees that the addresses are adjacent). Halide knows: in each straight-line stretch of a kernel (no loop,
// branch, barrier or allocation inside), the loads of a read-only buffer are compared with the stretch's
// integer lets expanded. Halide's simplifier puts an index's constant last, so loads at x + c, x + c + 1,
// ... share x; where all lanes of a group are read and its first index is a multiple of its width
// (Halide's modulus analysis; every buffer starts at a multiple of kDeviceBufferAlignment), they become
// one load, hoisted to the top of the stretch, and lane reads. Loads under a select are left alone: they
// may not be in bounds.
#pragma once
#include <set>
#include <string>

#include "Halide.h"

namespace tetra::dsl::gpu {

Halide::Internal::Stmt combine_vector_loads(const Halide::Internal::Stmt& kernel,
                                            const std::set<std::string>& read_only_buffers);

}  // namespace tetra::dsl::gpu
