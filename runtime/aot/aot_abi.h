/* The interface between a model library's generated glue (C, written by `tetra compile`) and tetra's
 * model-library runtime (aot_runtime.cpp). The glue holds the model's data: its serialised graph and
 * the table of the kernels compiled into the library; the runtime runs it. Applications never see
 * this: they call the NAME_* functions of the library's own header, which forward here. */
#ifndef TETRA_AOT_ABI_H
#define TETRA_AOT_ABI_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TETRA_AOT_ABI_VERSION 4

/* One compiled kernel: the KernelRequest key it answers, its Halide argv entry point, and what the
 * node kernels need to call it. */
typedef struct tetra_aot_kernel {
  const char* key;
  int (*fn)(void** argv);
  const char* schedule; /* JSON; "" for fixed pipelines */
  const char* source;   /* where the schedule came from */
  const char* spec;     /* QMatMul, QConv: the kernel spec as JSON (dsl/core/kernel_spec.h); "" otherwise */
  int panel, k_align;   /* QMatMul: the weight layout the code reads */
} tetra_aot_kernel;

/* Bytes built into the library. */
typedef struct tetra_aot_file {
  const char* name;
  const unsigned char* data;
  uint64_t size;
} tetra_aot_file;

/* The whole model as one GPU job (runtime/gpu/device_job.h) for one GPU target: the job's JSON and the
 * files it names (the program: an AMD code object, PTX or OpenCL C; the packed weights). */
typedef struct tetra_aot_gpu_job {
  const char* target;  /* "hip:gfx942", "cuda:sm_90", "opencl" */
  const char* dialect; /* "hip", "cuda", "opencl" */
  const char* arch;    /* what the program is built for ("gfx942", "sm_90"); "" for OpenCL C */
  tetra_aot_file job;
  const tetra_aot_file* files;
  size_t num_files;
} tetra_aot_gpu_job;

typedef struct tetra_aot_model {
  int abi_version;
  const char* name;
  const char* target;
  const unsigned char* graph; /* the serialised graph; NULL when it lives in a weights file */
  uint64_t graph_size;
  uint64_t weights_checksum;  /* FNV-1a of the weights file (when graph is NULL) */
  const tetra_aot_kernel* kernels;
  size_t num_kernels;
  int vector_lanes;
  const tetra_aot_gpu_job* gpu_jobs; /* in the order of the library's targets */
  size_t num_gpu_jobs;
} tetra_aot_model;

typedef struct tetra_aot_instance tetra_aot_instance;

/* Status codes, as each library's header names them. */
enum {
  TETRA_AOT_OK = 0,
  TETRA_AOT_INVALID_ARGUMENT = 1,
  TETRA_AOT_BAD_WEIGHTS = 2,
  TETRA_AOT_RUN_FAILED = 3,
  TETRA_AOT_OUT_OF_MEMORY = 4,
  TETRA_AOT_NO_DEVICE = 5
};

int tetra_aot_create(const tetra_aot_model* model, const char* weights_path, tetra_aot_instance** out);
/* `device`: NULL or "auto", "cpu", "gpu", a dialect ("hip", "cuda", "opencl") or one of the GPU jobs' targets. */
int tetra_aot_create_on(const tetra_aot_model* model, const char* weights_path, const char* device,
                        tetra_aot_instance** out);
const char* tetra_aot_device(const tetra_aot_instance* instance);
const char* tetra_aot_device_note(const tetra_aot_instance* instance);
void tetra_aot_destroy(tetra_aot_instance* instance);
const char* tetra_aot_last_error(void);
int tetra_aot_set_num_threads(int threads);
/* `outputs`: 0 for the inputs, 1 for the outputs. */
int tetra_aot_count(const tetra_aot_instance* instance, int outputs);
const char* tetra_aot_name(const tetra_aot_instance* instance, int outputs, int index);
int tetra_aot_dtype(const tetra_aot_instance* instance, int outputs, int index);
int tetra_aot_rank(const tetra_aot_instance* instance, int outputs, int index);
const int64_t* tetra_aot_shape(const tetra_aot_instance* instance, int outputs, int index);
int tetra_aot_bind(tetra_aot_instance* instance, int outputs, int index, int dtype, const int64_t* shape, int rank,
                   void* data);
/* Device memory (a hipDeviceptr_t or CUdeviceptr) of the instance's GPU in place of host memory. */
int tetra_aot_bind_device(tetra_aot_instance* instance, int outputs, int index, int dtype, const int64_t* shape,
                          int rank, void* device_ptr);
int tetra_aot_run(tetra_aot_instance* instance);

#ifdef __cplusplus
}
#endif
#endif
