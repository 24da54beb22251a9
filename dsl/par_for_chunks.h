// Parallel loops of Halide kernels on tetra's own worker threads. Halide's pool takes each iteration of
// a parallel loop under one global lock, and its idle workers spin with sched_yield, a system call,
// then sleep: a loop over 576 channels of a 7x7 map was 576 lock round trips, and every kernel of an
// inference woke its workers again. On a 2-core VM that was a third of a MobileNet-style model's time.
// Here a loop is split into at most 4 contiguous chunks per thread, claimed with one atomic each;
// workers spin on a generation counter with pause instructions for 76 us on Zen 4 (kernels of one
// inference follow each other closer than that) before they sleep on a condition variable.
// A loop that starts while another runs (nested, or from another host thread) goes to Halide's pool.
//
// It is C source, compiled into every Halide runtime tetra links: the kernel cache's shared runtime
// (dsl/object_cache.cpp) and each model library's glue (runtime/aot/aot_compiler.cpp). A constructor
// installs it when the runtime loads. Threads: tetra_par_for_set_threads(n) (a model library's
// set_num_threads), else HL_NUM_THREADS, else one per core, read at the first loop.
#pragma once

namespace tetra::dsl {

extern const char* const kParForChunksSource;

}  // namespace tetra::dsl
