/* Runs a compiled model on raw input files (the bytes of each input, in the model's order) and prints
 * every output value, one per line: "NAME INDEX VALUE". Float32 inputs and outputs.
 * It says on stderr which device ran it (and, on the CPU, why not a GPU the library has code for).
 *   run_model [--device auto|cpu|gpu|hip|cuda|opencl|TARGET] input0.bin [input1.bin ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include MODEL_HEADER

#define JOIN(a, b) a##_##b
#define CALL(a, b) JOIN(a, b)
#define API(f) CALL(MODEL, f)

static size_t elements(const int64_t* shape, int rank) {
  size_t n = 1;
  for (int d = 0; d < rank; ++d) n *= (size_t)shape[d];
  return n;
}

/* The library's messages name the call that failed. The instance (NULL if create failed) is freed: on a
 * GPU it holds device memory. */
static int fail(API(model)* model) {
  fprintf(stderr, "%s\n", API(last_error)());
  API(destroy)(model);
  return 1;
}

int main(int argc, char** argv) {
  API(model)* model = NULL;
  const char* device = NULL; /* auto: the first GPU present the library has code for, else the CPU */
  if (argc > 2 && strcmp(argv[1], "--device") == 0) {
    device = argv[2];
    argv += 2;
    argc -= 2;
  }
  if (API(create_on)(device, &model) != 0) return fail(model);
  fprintf(stderr, "device: %s\n", API(device)(model));
  if (*API(device_note)(model)) fprintf(stderr, "not on a GPU: %s\n", API(device_note)(model));
  int inputs = API(num_inputs)(model), outputs = API(num_outputs)(model);
  if (argc - 1 != inputs) {
    fprintf(stderr, "usage: %s <one raw float32 file per input: %d>\n", argv[0], inputs);
    API(destroy)(model);
    return 2;
  }
  float** in = calloc((size_t)inputs, sizeof(float*));
  float** out = calloc((size_t)outputs, sizeof(float*));
  for (int i = 0; i < inputs; ++i) {
    const int64_t* shape = API(input_shape)(model, i);
    int rank = API(input_rank)(model, i);
    size_t n = elements(shape, rank);
    in[i] = malloc(n * sizeof(float));
    FILE* f = fopen(argv[i + 1], "rb");
    if (!f || fread(in[i], sizeof(float), n, f) != n) {
      fprintf(stderr, "%s: cannot read %zu float32 values for input '%s'\n", argv[i + 1], n, API(input_name)(model, i));
      API(destroy)(model);
      return 2;
    }
    fclose(f);
    if (API(bind_input)(model, i, API(FLOAT32), shape, rank, in[i]) != 0) return fail(model);
  }
  for (int i = 0; i < outputs; ++i) {
    const int64_t* shape = API(output_shape)(model, i);
    int rank = API(output_rank)(model, i);
    out[i] = malloc(elements(shape, rank) * sizeof(float));
    if (API(bind_output)(model, i, API(FLOAT32), shape, rank, out[i]) != 0) return fail(model);
  }
  if (API(run)(model) != 0) return fail(model);
  for (int i = 0; i < outputs; ++i) {
    size_t n = elements(API(output_shape)(model, i), API(output_rank)(model, i));
    for (size_t k = 0; k < n; ++k) printf("%s %zu %.9g\n", API(output_name)(model, i), k, out[i][k]);
  }
  for (int i = 0; i < inputs; ++i) free(in[i]);
  for (int i = 0; i < outputs; ++i) free(out[i]);
  free(in);
  free(out);
  API(destroy)(model);
  return 0;
}
