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
#include <set>
#include <string>

#include "Halide.h"
#include "dsl/core/result.h"

namespace tetra::dsl::gpu {

Halide::Internal::Stmt localize_private_arrays(const Halide::Internal::Stmt& kernel);

// Cross-lane sums of register arrays (dsl::GpuKernelHints::lane_sums; run before localize_private_arrays).
//
// A schedule that splits a column's reduction across the x threads of a block (the lanes: rfactor, the
// partial sums' wrapper in registers, gpu_threads(u, ...) with u the fastest) leaves Halide's form of the
// sum: each lane writes its slot of a block-sized register array (one slot per column it sums), and the
// consumer, on one lane, reads the X slots of each column: `acc += lanes[y + 4 * c]` for c = 0..X-1,
// unrolled. Registers are private, so as lowered that reads what other lanes wrote. Here the lanes add
// up their values instead, in a butterfly of X / 2, X / 4, ..., 1 exchanges per column (the call
// tetra_lane_sum(value, X); dsl/gpu/emit_kernel.h): after it, every lane's slot holds its column's total,
// so the consumer's read of lane 0's slot becomes a read of its own slot, and the reads of the other
// lanes' slots drop out of the sum they are terms of.
//
// Every lane must take part in each exchange: the writes are hoisted out of a condition on thread ids (a
// guarded tail of columns), the lanes that fail it giving 0. What does not have this form is a Failure
// naming the array: a slot written twice, writes under different conditions or in a loop whose bounds
// depend on the thread, a read other than each lane of the reading thread's columns once, a dropped read
// that is not a term of a sum, X not a power of two.
Result<Halide::Internal::Stmt> lower_lane_sums(const Halide::Internal::Stmt& kernel,
                                               const std::set<std::string>& funcs);

}  // namespace tetra::dsl::gpu
