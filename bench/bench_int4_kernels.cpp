// Times the default QMatMul schedules on the reference int4 workloads (int4 weights blocked by 32
// along K, float32 scales; fp32-exact dequantize-then-FMA) and prints ms, GB/s and GFLOP/s.
//
//   tetra_bench_kernels [--threads 2] [--reps 30] [--case gemv_big|gemv|gemm|all]
//                       [--schedule '{"template": ..., "knobs": {...}}'] [--zero-points] [--hot]
//                       [--dump PREFIX]   (writes PREFIX_<case>.stmt and .s)
//
// The memory-bound GEMVs rotate over enough weight buffers (more than the last-level cache) that
// every call streams its weight from DRAM; --hot reuses one buffer instead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "schedules/qmatmul_kernel.h"
#include "schedules/qmatmul_templates.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::schedules;

namespace {

struct Options {
  int threads = 2;
  int reps = 0;  // 0: per case
  std::string which = "all";
  std::string schedule;
  bool zero_points = false;
  bool hot = false;
  std::string dump;  // write <dump>.stmt and <dump>.s for each case
};

struct Case {
  std::string name;
  int M, K, N;
  int buffers;  // weights rotated between calls
  int reps;
};

// A random int4 weight [K, N] blocked by 32 along K, built straight from random bytes.
QuantizedWeight make_weight(int K, int N, bool zero_points, uint64_t seed) {
  std::mt19937_64 rng(seed);
  QuantizedWeight w;
  w.name = "w" + std::to_string(seed);
  w.pattern = "DequantizeLinear";
  w.data = Tensor(DType::Int4, {K, N});
  uint8_t* bytes = w.data.mutable_bytes();
  for (int64_t i = 0; i < w.data.byte_size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(bytes + i, &r, size_t(std::min<int64_t>(8, w.data.byte_size() - i)));
  }
  w.axis = 0;
  w.block_size = 32;
  w.scale = Tensor(DType::Float32, {(K + 31) / 32, N});
  std::uniform_real_distribution<float> mag(0.01f, 0.1f);
  float* s = w.scale.mutable_data<float>();
  for (int64_t i = 0; i < w.scale.size(); ++i) s[i] = mag(rng);
  if (zero_points) {
    w.zero_point = Tensor(DType::Int4, w.scale.shape());
    uint8_t* z = w.zero_point.mutable_bytes();
    for (int64_t i = 0; i < w.zero_point.byte_size(); ++i) z[i] = uint8_t(rng());
  }
  return w;
}

// CPU time of the whole process in ms: with other jobs on the machine, cpu / threads estimates the
// uncontended wall time of a kernel that keeps every thread busy.
double cpu_ms() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-3;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int run_case(const Case& c, const Options& opt) {
  QuantizedWeight first = make_weight(c.K, c.N, opt.zero_points, 1);
  QMatMulWorkload wl = qmatmul_workload(first, false, c.M, false).value();
  Result<Schedule> schedule = opt.schedule.empty() ? default_qmatmul_schedule(wl, host_target())
                                                   : Schedule::parse(opt.schedule);
  if (!schedule) {
    std::fprintf(stderr, "%s\n", schedule.failure().describe().c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  Result<QMatMulKernel> kernel = compile_qmatmul(wl, schedule.value(), host_target());
  double compile_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!kernel) {
    std::fprintf(stderr, "%s\n", kernel.failure().describe().c_str());
    return 1;
  }
  const QMatMulKernel& k = kernel.value();
  if (!opt.dump.empty()) {
    k.write_lowered_stmt(opt.dump + "_" + c.name + ".stmt");
    k.write_assembly(opt.dump + "_" + c.name + ".s");
  }

  int buffers = opt.hot ? 1 : c.buffers;
  std::vector<PackedInt4Buffers> weights;
  for (int i = 0; i < buffers; ++i)
    weights.push_back(k.pack(i == 0 ? first : make_weight(c.K, c.N, opt.zero_points, uint64_t(i) + 1), false).value());
  Halide::Buffer<float> A(c.K, c.M), Y(c.N, c.M);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  A.for_each_value([&](float& v) { v = u(rng); });

  int reps = opt.reps > 0 ? opt.reps : c.reps;
  std::vector<double> ms, cpu;
  for (int i = 0; i < reps + 3; ++i) {  // 3 warm-up calls
    const PackedInt4Buffers& W = weights[size_t(i) % weights.size()];
    double cpu_start = cpu_ms();
    auto start = std::chrono::steady_clock::now();
    Status st = k.run(A, W, Y);
    double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (i >= 3) cpu.push_back((cpu_ms() - cpu_start) / opt.threads);
    if (!st) {
      std::fprintf(stderr, "%s\n", st.failure().describe().c_str());
      return 1;
    }
    if (i >= 3) ms.push_back(t);
  }
  double t = median(ms);
  double bytes = double(weights[0].bytes()) + 4.0 * (double(c.M) * c.K + double(c.M) * c.N);
  double flops = 2.0 * c.M * double(c.K) * c.N;
  std::printf("%-9s %4dx%5dx%5d  %8.3f ms  %6.1f GB/s  %6.1f GFLOP/s  (min %.3f, cpu/thread %.3f; %d buffers of %.1f MiB, compile %.2f s)\n",
              c.name.c_str(), c.M, c.K, c.N, t, bytes / t * 1e-6, flops / t * 1e-6,
              *std::min_element(ms.begin(), ms.end()), median(cpu), buffers, weights[0].bytes() / 1048576.0, compile_s);
  std::printf("          %s\n", k.schedule().to_string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") opt.threads = std::atoi(next().c_str());
    else if (a == "--reps") opt.reps = std::atoi(next().c_str());
    else if (a == "--case") opt.which = next();
    else if (a == "--schedule") opt.schedule = next();
    else if (a == "--zero-points") opt.zero_points = true;
    else if (a == "--hot") opt.hot = true;
    else if (a == "--dump") opt.dump = next();
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  // Halide's JIT thread pool reads this when it starts.
  setenv("HL_NUM_THREADS", std::to_string(opt.threads).c_str(), 1);
  std::printf("target %s (%s), %d threads, %s weights%s\n", host_target().name.c_str(),
              host_target().halide.to_string().c_str(), opt.threads, opt.zero_points ? "int4+zp" : "int4",
              opt.hot ? ", hot (one buffer)" : "");

  // Rotation: 8 x 80 MiB and 64 x 10 MiB exceed this machine's 480 MiB last-level cache.
  const std::vector<Case> cases = {
      {"gemv_big", 1, 8192, 16384, 8, 30},
      {"gemv", 1, 4096, 4096, 64, 200},
      {"gemm", 128, 4096, 4096, 1, 10},
  };
  int rc = 0;
  for (const Case& c : cases)
    if (opt.which == "all" || opt.which == c.name) rc |= run_case(c, opt);
  return rc;
}
