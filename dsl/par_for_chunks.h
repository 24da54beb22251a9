// Coarse tasks for Halide's thread pool. Halide's default par_for takes each iteration of a parallel
// loop under one global lock, so a loop over 576 channels of a 7x7 map is 576 lock round trips for
// a few microseconds of work each; on a 2-core VM those round trips (spinning, sched_yield) took a
// third of a MobileNet-style model's time. The handler below hands the pool at most 4 contiguous
// chunks of iterations per core instead, and leaves smaller loops as they are.
//
// It is C source, compiled into every Halide runtime tetra links: the kernel cache's shared runtime
// (dsl/object_cache.cpp) and each model library (runtime/aot/aot_compiler.cpp). A constructor
// installs it when the runtime loads, and it calls that runtime's own default par_for.
#pragma once

namespace tetra::dsl {

extern const char* const kParForChunksSource;

}  // namespace tetra::dsl
