#include "dsl/par_for_chunks.h"

namespace tetra::dsl {

const char* const kParForChunksSource = R"tetra_c(
/* Coarse tasks for Halide's thread pool (tetra: dsl/par_for_chunks.h). */
#include <stdint.h>
#include <unistd.h>

typedef int (*tetra_halide_task)(void *user_context, int index, uint8_t *closure);
typedef int (*tetra_halide_par_for)(void *user_context, tetra_halide_task task, int min, int extent, uint8_t *closure);
extern int halide_default_do_par_for(void *user_context, tetra_halide_task task, int min, int extent, uint8_t *closure);
extern tetra_halide_par_for halide_set_custom_do_par_for(tetra_halide_par_for handler);

enum { TETRA_CHUNKS_PER_CORE = 4 };
static int tetra_chunk_limit = 8;

struct tetra_chunked_loop {
  tetra_halide_task task;
  int min, extent, chunks;
  uint8_t *closure;
};

/* Chunk c runs iterations [min + extent * c / chunks, min + extent * (c + 1) / chunks). */
static int tetra_run_chunk(void *user_context, int c, uint8_t *closure) {
  const struct tetra_chunked_loop *loop = (const struct tetra_chunked_loop *)closure;
  int begin = loop->min + (int)((int64_t)loop->extent * c / loop->chunks);
  int end = loop->min + (int)((int64_t)loop->extent * (c + 1) / loop->chunks);
  for (int i = begin; i < end; ++i) {
    int result = loop->task(user_context, i, loop->closure);
    if (result) return result;
  }
  return 0;
}

static int tetra_chunked_par_for(void *user_context, tetra_halide_task task, int min, int extent, uint8_t *closure) {
  if (extent <= tetra_chunk_limit) return halide_default_do_par_for(user_context, task, min, extent, closure);
  struct tetra_chunked_loop loop = {task, min, extent, tetra_chunk_limit, closure};
  return halide_default_do_par_for(user_context, tetra_run_chunk, 0, loop.chunks, (uint8_t *)&loop);
}

__attribute__((constructor)) static void tetra_install_chunked_par_for(void) {
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  tetra_chunk_limit = TETRA_CHUNKS_PER_CORE * (int)(cores > 0 && cores < 4096 ? cores : 1);
  halide_set_custom_do_par_for(tetra_chunked_par_for);
}
)tetra_c";

}  // namespace tetra::dsl
