// Double-buffered chunks: one barrier a chunk instead of two, and the next chunk's loads issued before this
// chunk's arithmetic.
//
// A GEMM that stages its operands in workgroup memory a chunk of k at a time lowers (Halide 14) to
//
//   for kc in [min, min + extent):
//     P(kc)      stage chunk kc: loads of the inputs, stores to workgroup memory (barriers between its steps)
//     barrier    the chunk is written
//     C(kc)      the arithmetic, reading the chunk
//     barrier    the chunk is read: the next P may overwrite it
//
// With the kernel's workgroup memory doubled, and chunk kc in half (kc - min) & 1, it becomes
//
//   if (extent > 0) { P(min); barrier }
//   for kc in [min, min + extent):
//     if (kc + 1 < min + extent) P(kc + 1)    the other half: its last reader, C(kc - 1), passed the barrier
//     C(kc)
//     barrier                                 chunk kc + 1 is written, and chunk kc read
//
// The block meets at half the barriers, and its waves no longer all wait for the slowest copy before any
// computes. Where the staging only copies (it reads no workgroup memory, and its loops have constant
// extents: a GEMM's chunks of A and of the packed weight), the next chunk is also held in registers
// across the arithmetic, so that a wave's loads of it are in flight with the arithmetic's own loads
// instead of waited for on their own:
//
//     if (kc + 1 < min + extent) fetch chunk kc + 1 into registers (the copy's loops unrolled)
//     C(kc)
//     if (kc + 1 < min + extent) store them to the other half
//     barrier
//
// (the staging's barriers between its stretches dropped: none reads what another writes). Where it does
// more (the int8 GEMM quantizes A in steps), each stretch of it tests kc + 1 < min + extent on its own, so
// that every thread meets every barrier unconditionally.
//
// It is right when C(kc) and P(kc + 1) are independent: C holds no barrier and writes no workgroup memory, P
// stores only to workgroup memory and its own allocations and reads nothing C writes, and every workgroup
// memory the loop reads holds a chunk it stages (nothing staged before the loop is read in it).
#pragma once
#include <set>
#include <string>

#include "Halide.h"
#include "dsl/core/result.h"

namespace tetra::dsl::gpu {

// `kernel` with the serial loops named in `loops` (by the last part of their name: "kc" for acc.s1.k$x.kc)
// double-buffered; each one rewritten is added to *rewritten. A named loop without the form above is a
// Failure naming it and what it does instead.
Result<Halide::Internal::Stmt> double_buffer_chunks(const Halide::Internal::Stmt& kernel,
                                                    const std::set<std::string>& loops,
                                                    std::set<std::string>* rewritten);

}  // namespace tetra::dsl::gpu
