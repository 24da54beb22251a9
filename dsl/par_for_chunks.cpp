#include "dsl/par_for_chunks.h"

namespace tetra::dsl {

const char* const kParForChunksSource = R"tetra_c(
/* Parallel loops of Halide kernels on tetra's own worker threads (tetra: dsl/par_for_chunks.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef int (*tetra_halide_task)(void *user_context, int index, uint8_t *closure);
typedef int (*tetra_halide_par_for)(void *user_context, tetra_halide_task task, int min, int extent, uint8_t *closure);
extern int halide_default_do_par_for(void *user_context, tetra_halide_task task, int min, int extent, uint8_t *closure);
extern tetra_halide_par_for halide_set_custom_do_par_for(tetra_halide_par_for handler);

enum {
  TETRA_CHUNKS_PER_THREAD = 4,
  TETRA_MAX_THREADS = 1024,
  /* 76 us of pause instructions on Zen 4: kernels of one inference follow each other closer than that. */
  TETRA_SPINS_BEFORE_SLEEP = 4000,
};

static inline void tetra_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* One loop at a time. `claims` packs the loop's generation (bits 40-63), its chunk count (20-39) and
   the next unclaimed chunk (0-19), so a worker that wakes late for an earlier loop can never claim a
   chunk of the current one: its generation no longer matches. */
static struct {
  tetra_halide_task task;
  void *user_context;
  uint8_t *closure;
  int min, extent, chunks;
  _Atomic uint64_t claims;
  _Atomic int done, result;
  _Atomic unsigned generation;
  _Atomic int busy, sleepers, threads, started, stopping;
  pthread_t workers[TETRA_MAX_THREADS];
  pthread_mutex_t mutex;
  pthread_cond_t wake;
} tetra_pool = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static int tetra_claim(unsigned generation) {
  uint64_t v = atomic_load(&tetra_pool.claims);
  for (;;) {
    uint64_t chunks = (v >> 20) & 0xFFFFF, next = v & 0xFFFFF;
    if ((v >> 40) != (generation & 0xFFFFFF) || next >= chunks) return -1;
    if (atomic_compare_exchange_weak(&tetra_pool.claims, &v, v + 1)) return (int)next;
  }
}

/* Chunk c runs iterations [min + extent * c / chunks, min + extent * (c + 1) / chunks). */
static void tetra_run_chunks(unsigned generation) {
  int c;
  while ((c = tetra_claim(generation)) >= 0) {
    int begin = tetra_pool.min + (int)((int64_t)tetra_pool.extent * c / tetra_pool.chunks);
    int end = tetra_pool.min + (int)((int64_t)tetra_pool.extent * (c + 1) / tetra_pool.chunks);
    for (int i = begin; i < end; ++i) {
      int result = tetra_pool.task(tetra_pool.user_context, i, tetra_pool.closure);
      if (result) {
        atomic_store(&tetra_pool.result, result);
        break;
      }
    }
    atomic_fetch_add_explicit(&tetra_pool.done, 1, memory_order_release);
  }
}

static void *tetra_worker(void *arg) {
  int index = (int)(intptr_t)arg;
  unsigned seen = atomic_load(&tetra_pool.generation);
  for (;;) {
    unsigned generation;
    int spins = 0;
    while ((generation = atomic_load_explicit(&tetra_pool.generation, memory_order_acquire)) == seen) {
      if (atomic_load(&tetra_pool.stopping)) return NULL;
      if (++spins < TETRA_SPINS_BEFORE_SLEEP) {
        tetra_pause();
        continue;
      }
      pthread_mutex_lock(&tetra_pool.mutex);
      atomic_fetch_add(&tetra_pool.sleepers, 1);
      while (atomic_load(&tetra_pool.generation) == seen && !atomic_load(&tetra_pool.stopping))
        pthread_cond_wait(&tetra_pool.wake, &tetra_pool.mutex);
      atomic_fetch_sub(&tetra_pool.sleepers, 1);
      pthread_mutex_unlock(&tetra_pool.mutex);
      spins = 0;
    }
    seen = generation;
    if (index + 1 < atomic_load(&tetra_pool.threads)) tetra_run_chunks(generation);  /* else: set to fewer threads */
  }
}

/* The threads a loop may use, the caller's included: tetra_par_for_set_threads, else HL_NUM_THREADS
   (as Halide's own pool reads it), else one per core. */
void tetra_par_for_set_threads(int threads) {
  atomic_store(&tetra_pool.threads, threads < 1 ? 1 : threads > TETRA_MAX_THREADS ? TETRA_MAX_THREADS : threads);
}

static int tetra_default_threads(void) {
  const char *env = getenv("HL_NUM_THREADS");
  long n = env && *env ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);
  return (int)(n < 1 ? 1 : n > TETRA_MAX_THREADS ? TETRA_MAX_THREADS : n);
}

/* Starts workers up to threads - 1 (called with the pool held). */
static void tetra_start_workers(int threads) {
  while (atomic_load(&tetra_pool.started) < threads - 1) {
    int index = atomic_load(&tetra_pool.started);
    if (pthread_create(&tetra_pool.workers[index], NULL, tetra_worker, (void *)(intptr_t)index) != 0) break;
    atomic_fetch_add(&tetra_pool.started, 1);
  }
}

static int tetra_par_for(void *user_context, tetra_halide_task task, int min, int extent, uint8_t *closure) {
  int threads = atomic_load(&tetra_pool.threads);
  if (threads == 0) {
    int unset = 0;
    atomic_compare_exchange_strong(&tetra_pool.threads, &unset, tetra_default_threads());
    threads = atomic_load(&tetra_pool.threads);
  }
  if (extent <= 1 || threads == 1) {
    for (int i = min; i < min + extent; ++i) {
      int result = task(user_context, i, closure);
      if (result) return result;
    }
    return 0;
  }
  /* A loop inside a task of another loop, or one from another host thread (or after the library began
     to unload): Halide's own pool. */
  if (atomic_load(&tetra_pool.stopping) || atomic_exchange(&tetra_pool.busy, 1))
    return halide_default_do_par_for(user_context, task, min, extent, closure);
  tetra_start_workers(threads);
  int limit = TETRA_CHUNKS_PER_THREAD * threads;
  int chunks = extent < limit ? extent : limit;
  tetra_pool.task = task;
  tetra_pool.user_context = user_context;
  tetra_pool.closure = closure;
  tetra_pool.min = min;
  tetra_pool.extent = extent;
  tetra_pool.chunks = chunks;
  atomic_store(&tetra_pool.done, 0);
  atomic_store(&tetra_pool.result, 0);
  unsigned generation = atomic_load(&tetra_pool.generation) + 1;
  atomic_store(&tetra_pool.claims, ((uint64_t)(generation & 0xFFFFFF) << 40) | ((uint64_t)chunks << 20));
  atomic_store(&tetra_pool.generation, generation);
  if (atomic_load(&tetra_pool.sleepers)) {
    pthread_mutex_lock(&tetra_pool.mutex);
    pthread_cond_broadcast(&tetra_pool.wake);
    pthread_mutex_unlock(&tetra_pool.mutex);
  }
  tetra_run_chunks(generation);
  while (atomic_load_explicit(&tetra_pool.done, memory_order_acquire) < chunks) tetra_pause();
  int result = atomic_load(&tetra_pool.result);
  atomic_store(&tetra_pool.busy, 0);
  return result;
}

__attribute__((constructor)) static void tetra_install_par_for(void) { halide_set_custom_do_par_for(tetra_par_for); }

/* The workers run this library's code: they must end before it is unloaded (dlclose, process exit). */
__attribute__((destructor)) static void tetra_stop_workers(void) {
  atomic_store(&tetra_pool.stopping, 1);
  pthread_mutex_lock(&tetra_pool.mutex);
  pthread_cond_broadcast(&tetra_pool.wake);
  pthread_mutex_unlock(&tetra_pool.mutex);
  for (int i = 0; i < atomic_load(&tetra_pool.started); ++i) pthread_join(tetra_pool.workers[i], NULL);
}
)tetra_c";

}  // namespace tetra::dsl
