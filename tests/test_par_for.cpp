// tetra's parallel-loop handler (dsl/par_for_chunks.h), compiled as the runtimes compile it and driven
// by a stand-in for Halide's two entry points: every iteration of every loop runs exactly once, with
// any thread count, for loops nested in a task, for loops from several host threads at once, and a
// task's error comes back to the caller.
#include <catch2/catch.hpp>

#include <fstream>

#include "dsl/par_for_chunks.h"
#include "tests/test_support.h"

using namespace tetra;

namespace {

const char* kHarness = R"harness(
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*task_t)(void *, int, uint8_t *);
typedef int (*par_for_t)(void *, task_t, int, int, uint8_t *);
static par_for_t handler;
static _Atomic int fallbacks;
/* Halide's default: a serial loop here, counted. */
int halide_default_do_par_for(void *uc, task_t task, int min, int extent, uint8_t *closure) {
  atomic_fetch_add(&fallbacks, 1);
  for (int i = min; i < min + extent; ++i) {
    int r = task(uc, i, closure);
    if (r) return r;
  }
  return 0;
}
par_for_t halide_set_custom_do_par_for(par_for_t h) { handler = h; return 0; }
void tetra_par_for_set_threads(int threads);

struct loop { _Atomic int *hits; int min, nested, fail_at; };
static int body(void *uc, int i, uint8_t *closure) {
  struct loop *l = (struct loop *)closure;
  atomic_fetch_add(&l->hits[i - l->min], 1);
  if (i == l->fail_at) return -7;
  if (l->nested) {
    _Atomic int inner[13] = {0};
    struct loop sub = {inner, 0, 0, -1};
    if (handler(uc, body, 0, 13, (uint8_t *)&sub)) return -1;
    for (int k = 0; k < 13; ++k) if (inner[k] != 1) return -2;
  }
  return 0;
}

/* Runs loops of every extent up to `up_to` from `min`; 0 when each index ran once. */
static int sweep(int up_to, int nested) {
  for (int extent = 0; extent <= up_to; ++extent) {
    _Atomic int hits[512] = {0};
    struct loop l = {hits, -5, nested, -1000};
    if (handler(NULL, body, -5, extent, (uint8_t *)&l)) return 1;
    for (int k = 0; k < extent; ++k) if (hits[k] != 1) { fprintf(stderr, "extent %d index %d ran %d times\n", extent, k, hits[k]); return 1; }
  }
  return 0;
}
static void *host_thread(void *arg) { return (void *)(intptr_t)sweep(300, 0); }

int main(void) {
  if (!handler) { fprintf(stderr, "the handler was not installed at load\n"); return 1; }
  int threads[] = {1, 2, 3, 8};
  for (int t = 0; t < 4; ++t) {
    tetra_par_for_set_threads(threads[t]);
    if (sweep(500, 0) || sweep(40, 1)) return 1;
  }
  int before = fallbacks;
  if (sweep(40, 1) || fallbacks == before) { fprintf(stderr, "nested loops did not fall back\n"); return 1; }
  pthread_t host[4];
  for (int t = 0; t < 4; ++t) pthread_create(&host[t], NULL, host_thread, NULL);
  for (int t = 0; t < 4; ++t) { void *r; pthread_join(host[t], &r); if (r) return 1; }
  _Atomic int hits[100] = {0};
  struct loop failing = {hits, 0, 0, 63};
  if (handler(NULL, body, 0, 100, (uint8_t *)&failing) != -7) { fprintf(stderr, "the task's error was lost\n"); return 1; }
  puts("ok");
  return 0;
}
)harness";

}  // namespace

TEST_CASE("parallel loops run every iteration once, nested and from several threads", "[par_for]") {
  std::string dir = test::temp_dir("par_for");
  std::ofstream(dir + "/par_for.c") << dsl::kParForChunksSource;
  std::ofstream(dir + "/harness.c") << kHarness;
  std::string build_log, run_log;
  int built = test::run_command("cc -O2 -pthread -o " + dir + "/check " + dir + "/par_for.c " + dir + "/harness.c",
                                &build_log);
  INFO(build_log);
  REQUIRE(built == 0);
  int ran = test::run_command(dir + "/check", &run_log);
  INFO(run_log);
  CHECK(ran == 0);
  CHECK(run_log.find("ok") != std::string::npos);
}
