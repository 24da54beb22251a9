// Runs a model library on the device create picks by default and on the CPU, with the same random inputs
// (float32 or float16 in [-2, 2]; int64 indices in [-4, 3], so any axis of 4 or more takes them), and
// compares every output: "device_check: DEVICE, max error E of scale S" and
// exit 0 when each output is within TOLERANCE * (1 + its largest magnitude) of the CPU's, else exit 1.
//   device_check TOLERANCE
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include MODEL_HEADER

#define JOIN(a, b) a##_##b
#define CALL(a, b) JOIN(a, b)
#define API(f) CALL(MODEL, f)

namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float magnitude = exponent == 0    ? std::ldexp(float(mantissa), -24)
                    : exponent == 31 ? (mantissa ? NAN : INFINITY)
                                     : std::ldexp(float(mantissa | 0x400), int(exponent) - 25);
  return sign ? -magnitude : magnitude;
}

uint16_t float_to_half(float f) {  // values of the test's range: normal, no rounding overflow to care for
  uint32_t bits = 0;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const float a = std::fabs(f);
  if (a < 6.1e-5f) return sign;  // a subnormal's worth: zero is close enough for inputs
  int e = 0;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const uint32_t mantissa = uint32_t(std::lround((m * 2 - 1) * 1024));
  return uint16_t(sign | (uint32_t(e + 14) << 10) + mantissa);
}

struct Value {
  int dtype = 0;
  std::vector<unsigned char> bytes;
  double get(size_t i) const {
    if (dtype == API(FLOAT16)) {
      uint16_t h;
      std::memcpy(&h, &bytes[2 * i], 2);
      return half_to_float(h);
    }
    float f;
    std::memcpy(&f, &bytes[4 * i], 4);
    return f;
  }
};

size_t count(const int64_t* shape, int rank) {
  size_t n = 1;
  for (int d = 0; d < rank; ++d) n *= size_t(shape[d]);
  return n;
}

// One run of `m` on `inputs`: its outputs, or empty with the error printed.
std::vector<Value> run(API(model) * m, const std::vector<Value>& inputs) {
  std::vector<Value> outputs(size_t(API(num_outputs)(m)));
  for (int i = 0; i < API(num_inputs)(m); ++i)
    if (API(bind_input)(m, i, inputs[size_t(i)].dtype, API(input_shape)(m, i), API(input_rank)(m, i),
                        inputs[size_t(i)].bytes.data()) != API(OK))
      return std::printf("bind_input: %s\n", API(last_error)()), std::vector<Value>{};
  for (int i = 0; i < API(num_outputs)(m); ++i) {
    Value& v = outputs[size_t(i)];
    v.dtype = API(output_dtype)(m, i);
    v.bytes.resize(count(API(output_shape)(m, i), API(output_rank)(m, i)) * (v.dtype == API(FLOAT16) ? 2 : 4));
    if (API(bind_output)(m, i, v.dtype, API(output_shape)(m, i), API(output_rank)(m, i), v.bytes.data()) != API(OK))
      return std::printf("bind_output: %s\n", API(last_error)()), std::vector<Value>{};
  }
  if (API(run)(m) != API(OK)) return std::printf("run: %s\n", API(last_error)()), std::vector<Value>{};
  return outputs;
}

}  // namespace

int main(int argc, char** argv) {
  const double tolerance = argc > 1 ? std::atof(argv[1]) : 1e-4;
  API(model)* device = nullptr;
  API(model)* cpu = nullptr;
  if (API(create_on)("auto", &device) != API(OK) || API(create_on)("cpu", &cpu) != API(OK)) {
    std::printf("create: %s\n", API(last_error)());
    return 1;
  }
  std::mt19937 rng(20261205);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::uniform_int_distribution<int64_t> index(-4, 3);
  std::vector<Value> inputs(size_t(API(num_inputs)(device)));
  for (int i = 0; i < API(num_inputs)(device); ++i) {
    Value& v = inputs[size_t(i)];
    v.dtype = API(input_dtype)(device, i);
    const size_t n = count(API(input_shape)(device, i), API(input_rank)(device, i));
    for (size_t k = 0; k < n; ++k) {
      const float x = u(rng);
      if (v.dtype == API(INT64)) {
        const int64_t i = index(rng);
        v.bytes.insert(v.bytes.end(), reinterpret_cast<const unsigned char*>(&i),
                       reinterpret_cast<const unsigned char*>(&i) + 8);
      } else if (v.dtype == API(FLOAT16)) {
        const uint16_t h = float_to_half(x);
        v.bytes.insert(v.bytes.end(), reinterpret_cast<const unsigned char*>(&h),
                       reinterpret_cast<const unsigned char*>(&h) + 2);
      } else {
        v.bytes.insert(v.bytes.end(), reinterpret_cast<const unsigned char*>(&x),
                       reinterpret_cast<const unsigned char*>(&x) + 4);
      }
    }
    // Device memory is for float32 values only here (int32 too; int64 is narrowed on the way in).
    if (v.dtype != API(FLOAT32) &&
        API(bind_input_device)(device, i, v.dtype, API(input_shape)(device, i), API(input_rank)(device, i),
                               v.bytes.data()) != API(INVALID_ARGUMENT)) {
      std::printf("bind_input_device took a %d input\n", v.dtype);
      return 1;
    }
  }
  std::vector<Value> got = run(device, inputs), want = run(cpu, inputs);
  if (got.empty() || want.empty()) return 1;
  bool ok = true;
  double worst = 0, worst_scale = 0;
  for (size_t o = 0; o < got.size(); ++o) {
    const size_t n = got[o].bytes.size() / (got[o].dtype == API(FLOAT16) ? 2 : 4);
    double scale = 0, error = 0;
    for (size_t k = 0; k < n; ++k) {
      scale = std::max(scale, std::fabs(want[o].get(k)));
      const double e = std::fabs(got[o].get(k) - want[o].get(k));
      error = std::isnan(e) ? INFINITY : std::max(error, e);
    }
    ok = ok && error <= tolerance * (1 + scale);
    if (error / (1 + scale) >= worst / (1 + worst_scale)) worst = error, worst_scale = scale;
  }
  std::printf("device_check: %s, max error %.3g of scale %.3g\n", API(device)(device), worst, worst_scale);
  API(destroy)(device);
  API(destroy)(cpu);
  return ok ? 0 : 1;
}
