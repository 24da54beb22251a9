// Checks a model library's C API (one float32 input, one float32 output): every bad argument is a
// status code with a message naming what is wrong, never a crash; on a HIP or CUDA device, a run from and
// into device memory agrees with one from and into host memory; instances run concurrently from several
// threads and agree with one instance run alone; one instance shared by threads serialises.
// Prints "api_check: N passed, 0 failed" or the failed checks (exit 1).
#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include MODEL_HEADER

#define JOIN(a, b) a##_##b
#define CALL(a, b) JOIN(a, b)
#define API(f) CALL(MODEL, f)

namespace {

int passed = 0, failed = 0;

void expect(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED: %s (last error: %s)\n", what.c_str(), API(last_error)());
  }
}

bool error_mentions(const char* text) { return std::strstr(API(last_error)(), text) != nullptr; }

size_t count(const int64_t* shape, int rank) {
  size_t n = 1;
  for (int d = 0; d < rank; ++d) n *= size_t(shape[d]);
  return n;
}

std::vector<float> random_values(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// Runs `m` on `input`; the output, or empty on failure.
std::vector<float> run_once(API(model)* m, const std::vector<float>& input) {
  std::vector<float> out(count(API(output_shape)(m, 0), API(output_rank)(m, 0)));
  if (API(bind_input)(m, 0, API(FLOAT32), API(input_shape)(m, 0), API(input_rank)(m, 0), input.data()) != API(OK) ||
      API(bind_output)(m, 0, API(FLOAT32), API(output_shape)(m, 0), API(output_rank)(m, 0), out.data()) != API(OK) ||
      API(run)(m) != API(OK))
    return {};
  return out;
}

// Device memory of a HIP or CUDA instance's GPU, from the runtime the library opens (the same library
// loaded once: its allocations are the instance's device's). Addresses are 64-bit either way: a
// hipDeviceptr_t is a pointer, a CUdeviceptr an integer, and both pass the same way. With the CUDA driver
// the caller makes the device's primary context current on its thread, as a CUDA program does.
struct DeviceMemory {
  void* library = nullptr;
  int (*allocate)(uint64_t*, size_t) = nullptr;
  int (*release)(uint64_t) = nullptr;
  int (*to_device)(uint64_t, const void*, size_t) = nullptr;
  int (*to_host)(void*, uint64_t, size_t) = nullptr;
  void* context = nullptr;  // CUDA: the primary context, pushed on this thread
  int (*pop_context)(void**) = nullptr;
  int (*release_context)(int) = nullptr;

  explicit DeviceMemory(const std::string& device) {
    const bool hip = device.rfind("hip", 0) == 0;
    for (const char* name : hip ? std::vector<const char*>{"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"}
                                : std::vector<const char*>{"libcuda.so.1"})
      if (!library) library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!library) return;
    auto find = [&](const char* name, auto& entry) {
      entry = reinterpret_cast<decltype(+entry)>(dlsym(library, name));
    };
    find(hip ? "hipMalloc" : "cuMemAlloc_v2", allocate);
    find(hip ? "hipFree" : "cuMemFree_v2", release);
    find(hip ? "hipMemcpyHtoD" : "cuMemcpyHtoD_v2", to_device);
    find(hip ? "hipMemcpyDtoH" : "cuMemcpyDtoH_v2", to_host);
    if (hip) return;
    int (*init)(unsigned) = nullptr;
    int (*retain)(void**, int) = nullptr;
    int (*push)(void*) = nullptr;
    find("cuInit", init);
    find("cuDevicePrimaryCtxRetain", retain);
    find("cuCtxPushCurrent_v2", push);
    find("cuCtxPopCurrent_v2", pop_context);
    find("cuDevicePrimaryCtxRelease_v2", release_context);
    if (!init || !retain || !push || !pop_context || !release_context || init(0) != 0 || retain(&context, 0) != 0 ||
        push(context) != 0)
      allocate = nullptr;  // not ok()
  }
  ~DeviceMemory() {
    if (context && pop_context) {
      void* popped = nullptr;
      pop_context(&popped);
      release_context(0);
    }
    if (library) dlclose(library);
  }
  bool ok() const { return allocate && release && to_device && to_host; }
};

}  // namespace

int main() {
  // Creation and queries.
  expect(API(create)(nullptr) == API(INVALID_ARGUMENT), "create(NULL) is an invalid argument");
  API(model)* m = nullptr;
  expect(API(create)(&m) == API(OK) && m, "create succeeds");
  if (!m) return 1;
  API(model)* from_file = m;
  expect(API(create_from_file)("/nonexistent.weights", &from_file) != API(OK) && from_file == nullptr,
         "create_from_file on a library with built-in weights fails and sets the result to NULL");
  expect(API(num_inputs)(m) == 1 && API(num_outputs)(m) == 1, "one input, one output");
  expect(API(num_inputs)(nullptr) == -1, "num_inputs(NULL) is -1");
  expect(API(input_name)(m, 1) == nullptr && API(input_name)(m, -1) == nullptr, "input_name out of range is NULL");
  expect(API(output_shape)(m, 5) == nullptr && API(output_rank)(m, 5) == -1, "output queries out of range");
  expect(API(input_dtype)(m, 0) == API(FLOAT32), "the input is float32");
  expect(API(set_num_threads)(0) == API(INVALID_ARGUMENT), "set_num_threads(0) is an invalid argument");

  const int64_t* in_shape = API(input_shape)(m, 0);
  int in_rank = API(input_rank)(m, 0);
  std::string in_name = API(input_name)(m, 0);
  std::vector<float> input = random_values(count(in_shape, in_rank), 7);

  // Bad bindings.
  expect(API(run)(m) == API(INVALID_ARGUMENT) && error_mentions("not bound"), "run before binding names the input");
  expect(API(bind_input)(m, 0, API(FLOAT16), in_shape, in_rank, input.data()) == API(INVALID_ARGUMENT) &&
             error_mentions(in_name.c_str()) && error_mentions("float32"),
         "a wrong element type names the input and its type");
  std::vector<int64_t> wrong(in_shape, in_shape + in_rank);
  wrong[0] += 1;
  expect(API(bind_input)(m, 0, API(FLOAT32), wrong.data(), in_rank, input.data()) == API(INVALID_ARGUMENT) &&
             error_mentions("shape"),
         "a wrong shape is refused");
  expect(API(bind_input)(m, 0, API(FLOAT32), in_shape, in_rank - 1, input.data()) == API(INVALID_ARGUMENT),
         "a wrong rank is refused");
  expect(API(bind_input)(m, 0, API(FLOAT32), nullptr, in_rank, input.data()) == API(INVALID_ARGUMENT),
         "a NULL shape is refused");
  expect(API(bind_input)(m, 0, API(FLOAT32), in_shape, in_rank, nullptr) == API(INVALID_ARGUMENT) &&
             error_mentions("NULL"),
         "NULL data is refused");
  expect(API(bind_input)(m, 3, API(FLOAT32), in_shape, in_rank, input.data()) == API(INVALID_ARGUMENT),
         "an input index out of range is refused");
  expect(API(bind_input)(nullptr, 0, API(FLOAT32), in_shape, in_rank, input.data()) == API(INVALID_ARGUMENT),
         "a NULL model is refused");
  expect(API(run)(nullptr) == API(INVALID_ARGUMENT), "run(NULL) is refused");
  API(destroy)(nullptr);  // allowed, like free(NULL)
  // Device memory where the instance's device has no addresses to bind: the CPU, or OpenCL.
  const std::string device = API(device)(m);
  std::printf("the instance runs on %s\n", device.c_str());
  if (device == "cpu" || device == "opencl")
    expect(API(bind_input_device)(m, 0, API(FLOAT32), in_shape, in_rank, input.data()) == API(INVALID_ARGUMENT) &&
               (error_mentions("runs on the cpu") || error_mentions("no addresses")),
           "device memory is refused on " + device);
  else  // the kernels assume 16-byte aligned buffers
    expect(API(bind_input_device)(m, 0, API(FLOAT32), in_shape, in_rank, input.data() + 1) == API(INVALID_ARGUMENT) &&
               error_mentions("multiple of 16 bytes"),
           "device memory off a 16-byte boundary is refused on " + device);
  if (std::strlen(API(GPU_TARGETS)) == 0) {  // a library without GPU code
    expect(device == "cpu" && std::strlen(API(device_note)(m)) == 0, "the instance is on the cpu");
    API(model)* none = nullptr;
    expect(API(create_on)("gpu", &none) == API(NO_DEVICE) && !none && error_mentions("no GPU code"),
           "create_on(gpu) without GPU code is NO_DEVICE");
  }
  API(model)* unknown = nullptr;
  expect(API(create_on)("tpu", &unknown) == API(INVALID_ARGUMENT) && !unknown && error_mentions("no device 'tpu'"),
         "an unknown device is refused");

  // A good run after the bad calls, then the same from fresh instances on concurrent threads.
  std::vector<float> alone = run_once(m, input);
  expect(!alone.empty() && std::strlen(API(last_error)()) == 0, "a run after refused bindings succeeds");
  bool finite = !alone.empty();
  for (float v : alone) finite = finite && std::isfinite(v);
  expect(finite, "the outputs are finite");

  // Device memory in and out on a HIP or CUDA instance: the same outputs as host memory's run.
  if (device.rfind("hip", 0) == 0 || device.rfind("cuda", 0) == 0) {
    DeviceMemory memory(device);
    expect(memory.ok(), "the device's runtime gives device memory");
    const int64_t* out_shape = API(output_shape)(m, 0);
    const int out_rank = API(output_rank)(m, 0);
    const size_t in_bytes = input.size() * sizeof(float), out_bytes = count(out_shape, out_rank) * sizeof(float);
    uint64_t in_device = 0, out_device = 0;
    std::vector<float> back(count(out_shape, out_rank), NAN);
    if (memory.ok() && memory.allocate(&in_device, in_bytes) == 0 && memory.allocate(&out_device, out_bytes) == 0 &&
        memory.to_device(in_device, input.data(), in_bytes) == 0) {
      expect(
          API(bind_input_device)(m, 0, API(FLOAT32), in_shape, in_rank, reinterpret_cast<void*>(in_device)) == API(OK),
          "device memory binds as the input");
      expect(API(bind_output_device)(m, 0, API(FLOAT32), out_shape, out_rank, reinterpret_cast<void*>(out_device)) ==
                 API(OK),
             "device memory binds as the output");
      expect(API(run)(m) == API(OK) && memory.to_host(back.data(), out_device, out_bytes) == 0 && back == alone,
             "a run from and into device memory gives the outputs of a run from and into host memory");
    } else {
      expect(false, "device memory for the input and output");
    }
    // Host memory again, for the checks below; the instance never frees the caller's device memory.
    expect(!run_once(m, input).empty(), "host memory binds again after device memory");
    if (in_device) expect(memory.release(in_device) == 0, "the caller frees its input's device memory");
    if (out_device) expect(memory.release(out_device) == 0, "the caller frees its output's device memory");
  }

  const int threads = 4, runs = 10;
  std::vector<std::vector<float>> inputs, expected;
  for (int t = 0; t < threads; ++t) {
    inputs.push_back(random_values(input.size(), 100 + t));
    expected.push_back(run_once(m, inputs.back()));
  }
  std::vector<int> agree(threads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      API(model)* own = nullptr;
      if (API(create)(&own) != API(OK)) return;
      for (int r = 0; r < runs; ++r) agree[t] += run_once(own, inputs[t]) == expected[t];
      API(destroy)(own);
    });
  for (std::thread& t : pool) t.join();
  for (int t = 0; t < threads; ++t)
    expect(agree[t] == runs, "thread " + std::to_string(t) + ": its own instance agrees with one run alone");

  // One instance shared by two threads: its calls serialise, and every run succeeds.
  std::vector<float> shared_out(expected[0].size());
  API(bind_input)(m, 0, API(FLOAT32), in_shape, in_rank, inputs[0].data());
  API(bind_output)(m, 0, API(FLOAT32), API(output_shape)(m, 0), API(output_rank)(m, 0), shared_out.data());
  pool.clear();
  std::vector<int> ok(2, 0);
  for (int t = 0; t < 2; ++t)
    pool.emplace_back([&, t] {
      for (int r = 0; r < runs; ++r) ok[t] += API(run)(m) == API(OK);
    });
  for (std::thread& t : pool) t.join();
  expect(ok[0] == runs && ok[1] == runs && shared_out == expected[0],
         "one instance shared by two threads runs every call, with the same result");

  API(destroy)(m);

  // A destroyed handle is an error code from every call, never a crash or a hang.
  expect(API(run)(m) == API(INVALID_ARGUMENT) && error_mentions("not a live instance"), "run after destroy is refused");
  expect(API(bind_input)(m, 0, API(FLOAT32), nullptr, 0, input.data()) == API(INVALID_ARGUMENT),
         "bind after destroy is refused");
  expect(API(num_inputs)(m) == -1 && API(input_name)(m, 0) == nullptr, "queries after destroy return -1 / NULL");
  API(destroy)(m);
  expect(error_mentions("not a live instance"), "a second destroy is refused, with a message");
  std::printf("api_check: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
