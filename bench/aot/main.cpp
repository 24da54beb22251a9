// The latency of a compiled model, as `tetra bench --json` reports the JIT runtime's: prints
// {"startup_ms": create + first run, "median_ms", "min_ms", "max_ms"} over REPEAT runs after a warm-up.
//   aot_bench [REPEAT] [THREADS]   (float32 inputs filled with values in [-1, 1]; REPEAT 0: start-up only)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include MODEL_HEADER

#define JOIN(a, b) a##_##b
#define CALL(a, b) JOIN(a, b)
#define API(f) CALL(MODEL, f)

using Clock = std::chrono::steady_clock;

static double ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

static void check(int rc, const char* what) {
  if (rc != 0) {
    std::fprintf(stderr, "%s: %s\n", what, API(last_error)());
    std::exit(1);
  }
}

int main(int argc, char** argv) {
  int repeat = argc > 1 ? std::atoi(argv[1]) : 20;
  if (argc > 2) check(API(set_num_threads)(std::atoi(argv[2])), "set_num_threads");
  auto start = Clock::now();
  API(model)* m = nullptr;
  check(API(create)(&m), "create");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> buffers;
  for (int out = 0; out < 2; ++out) {
    int n = out ? API(num_outputs)(m) : API(num_inputs)(m);
    for (int i = 0; i < n; ++i) {
      const int64_t* shape = out ? API(output_shape)(m, i) : API(input_shape)(m, i);
      int rank = out ? API(output_rank)(m, i) : API(input_rank)(m, i);
      size_t count = 1;
      for (int d = 0; d < rank; ++d) count *= size_t(shape[d]);
      buffers.emplace_back(count);
      for (float& v : buffers.back()) v = u(rng);
      check(out ? API(bind_output)(m, i, API(FLOAT32), shape, rank, buffers.back().data())
                : API(bind_input)(m, i, API(FLOAT32), shape, rank, buffers.back().data()),
            "bind");
    }
  }
  check(API(run)(m), "run");
  double startup = ms(start, Clock::now());
  if (repeat < 1) {  // start-up only
    std::printf("{\"startup_ms\": %.3f}\n", startup);
    return 0;
  }
  for (int w = 0; w < 3; ++w) check(API(run)(m), "run");
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = Clock::now();
    check(API(run)(m), "run");
    times.push_back(ms(t0, Clock::now()));
  }
  std::sort(times.begin(), times.end());
  std::printf("{\"startup_ms\": %.3f, \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f}\n", startup,
              times[times.size() / 2], times.front(), times.back());
  API(destroy)(m);
  return 0;
}
