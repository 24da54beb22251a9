// Register arrays a thread keeps to itself, sized for one thread.
//
// A Func computed at the block level with store_in(MemoryType::Register) and gpu_threads on its loops
// (a thread's tile of accumulators that must live across a serial loop with barriers in it, such as a
// GEMM's k-chunks staged through workgroup memory) is private to each thread, but Halide 14 sizes it for
// the whole block and indexes it by thread: `float acc[1024]; acc[(ty * 64 + tx) * 2 + 65]`. A dynamic
// index puts the array in scratch memory.
//
// Every access of such an array is base + c, where the base is one expression of values fixed for the
// array's lifetime (thread and block ids, values bound outside it) and c is a constant. Each thread's
// copy is its own, so any one-to-one relabelling of a thread's slots changes no value: each distinct c
// gets the next slot, and the array becomes `float acc[4]` indexed by constants, which LLVM keeps in
// registers. An array whose accesses do not have that form is left as it is (its scratch shows in the
// code object).
#pragma once
#include "Halide.h"

namespace tetra::dsl::gpu {

Halide::Internal::Stmt localize_private_arrays(const Halide::Internal::Stmt& kernel);

}  // namespace tetra::dsl::gpu
