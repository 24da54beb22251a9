#include "runtime/aot/aot_compiler.h"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "Halide.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/par_for_chunks.h"
#include "dsl/process.h"
#include "importer/error.h"
#include "runtime/aot/aot_abi_text.h"
#include "runtime/aot/gpu_model_job.h"
#include "runtime/aot/staging_folder.h"
#include "runtime/executor.h"
#include "runtime/graph_io.h"
#include "runtime/jit_kernel_source.h"

namespace tetra {
namespace fs = std::filesystem;

namespace {

// The JIT source, noting every request: the kernels the model needs for its shapes.
class RecordingSource : public KernelSource {
 public:
  explicit RecordingSource(const std::string& kernel_cache) : jit_(nullptr, kernel_cache) {}
  KernelCode get(const KernelRequest& request) override {
    requests.emplace(request.key(), request);
    return jit_.get(request);
  }
  int vector_lanes() const override { return jit_.vector_lanes(); }
  std::map<std::string, KernelRequest> requests;  // by key: deterministic order

 private:
  JitKernelSource jit_;
};

// A kernel as the library table lists it.
struct TableEntry {
  std::string key, function, source;
  KernelCode info;   // schedule, layout, spec
  std::string spec;  // QMatMul, QConv: info.spec as JSON; "" for fixed pipelines
};

std::string c_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

void write_file(const fs::path& path, const void* data, size_t size) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(size));
  check(bool(out), ErrorKind::Io, "cannot write '" + path.string() + "'");
}
void write_text(const fs::path& path, const std::string& text) { write_file(path, text.data(), text.size()); }

// Runs a build tool (no shell); its output goes into the error when it fails.
void run_tool(const std::vector<std::string>& argv, const std::string& what, const fs::path& stdin_path = {}) {
  dsl::ProgramRun run = dsl::run_program(argv, stdin_path.string());
  check(run.ok(), ErrorKind::Io, what + " failed (" + dsl::describe_command(argv) + "):\n" + run.output);
}

// A build tool named by an environment variable (CC="ccache cc" is a command and its argument).
std::vector<std::string> tool(const char* env, const char* fallback) {
  const char* v = std::getenv(env);
  std::vector<std::string> command = dsl::split_command(v && *v ? v : fallback);
  return command.empty() ? std::vector<std::string>{fallback} : command;
}

// `command` followed by `args`.
std::vector<std::string> with_args(std::vector<std::string> command, std::initializer_list<std::string> args) {
  command.insert(command.end(), args.begin(), args.end());
  return command;
}

const char* kHeader = R"(/* @NAME@: the model '@MODEL@' compiled by tetra for @TARGET@.
 *
 * Use:
 *   @NAME@_model* m;
 *   if (@NAME@_create(&m) != @NAME@_OK) { fprintf(stderr, "%s\n", @NAME@_last_error()); ... }
 *   @NAME@_bind_input(m, 0, @NAME@_FLOAT32, shape, rank, data);   (every input and output)
 *   @NAME@_bind_output(m, 0, @NAME@_FLOAT32, shape, rank, result);
 *   @NAME@_run(m);                                                 (as often as needed)
 *   @NAME@_destroy(m);
 *
 * Every function returns a status (or NULL / -1 for the queries); on failure @NAME@_last_error()
 * says what and where. Nothing aborts the process. Shapes are fixed: those the model was compiled for.
 *
 * Threads: instances are independent, and several may run at once from several threads. One
 * instance runs one call at a time (calls on it from other threads wait). Instances share the
 * model's read-only data; each holds its own working buffers and kernel weight layouts.
 *
 * Handles: a destroyed instance is no longer a handle. Passing it again (a second destroy, a run,
 * a bind) returns @NAME@_INVALID_ARGUMENT (NULL / -1 for the queries); destroy sets the message.
 * Still undefined: destroying an instance while another thread is inside a call on it, and a stale
 * handle whose address a later create happens to reuse (it then names that new instance).
 */
#ifndef @NAME@_H
#define @NAME@_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define @NAME@_TARGET "@TARGET@"
#define @NAME@_GPU_TARGETS "@GPU_TARGETS@" /* the GPUs it has code for, in the order create tries them */
@WEIGHTS_DEFINE@
/* Status codes */
#define @NAME@_OK 0
#define @NAME@_INVALID_ARGUMENT 1 /* NULL or destroyed model, index out of range, wrong element type or shape */
#define @NAME@_BAD_WEIGHTS 2      /* the weights file is missing, unreadable or of another model */
#define @NAME@_RUN_FAILED 3       /* a kernel failed; the message names the node */
#define @NAME@_OUT_OF_MEMORY 4
#define @NAME@_NO_DEVICE 5        /* create_on: none of the devices asked for is here (the message says why) */

/* Element types (ONNX's TensorProto numbering) */
#define @NAME@_FLOAT32 1
#define @NAME@_UINT8 2
#define @NAME@_INT8 3
#define @NAME@_INT32 6
#define @NAME@_INT64 7
#define @NAME@_BOOL 9
#define @NAME@_FLOAT16 10
#define @NAME@_FLOAT64 11

typedef struct @NAME@_model @NAME@_model;

/* A new instance, with the weights built into the library. */
int @NAME@_create(@NAME@_model** model);
/* A new instance reading the weights file written beside the library (checksummed). */
int @NAME@_create_from_file(const char* weights_path, @NAME@_model** model);
/* A new instance (built-in weights) on the device asked for: "auto" or NULL (what _create does: the first
 * of @NAME@_GPU_TARGETS whose device is here, else the CPU), "cpu", "gpu" (the first present, never the
 * CPU), a driver ("hip", "cuda", "opencl") or one of @NAME@_GPU_TARGETS ("hip-gfx942" or "hip:gfx942"). */
int @NAME@_create_on(const char* device, @NAME@_model** model);
/* The device the instance runs on: "cpu" or one of @NAME@_GPU_TARGETS ("hip-gfx942"). */
const char* @NAME@_device(const @NAME@_model* model);
/* Why an instance on the CPU is not on one of the library's GPUs, per driver or target ("" when it has
 * none): "hip: cannot load libamdhip64.so ...", "hip-gfx942: the device is ...". */
const char* @NAME@_device_note(const @NAME@_model* model);
void @NAME@_destroy(@NAME@_model* model);
/* The calling thread's last error message ("" after a success). */
const char* @NAME@_last_error(void);
/* Threads for the kernels of every instance (default: one per core). */
int @NAME@_set_num_threads(int threads);

int @NAME@_num_inputs(const @NAME@_model* model);
int @NAME@_num_outputs(const @NAME@_model* model);
const char* @NAME@_input_name(const @NAME@_model* model, int index);
const char* @NAME@_output_name(const @NAME@_model* model, int index);
int @NAME@_input_dtype(const @NAME@_model* model, int index);
int @NAME@_output_dtype(const @NAME@_model* model, int index);
int @NAME@_input_rank(const @NAME@_model* model, int index);
int @NAME@_output_rank(const @NAME@_model* model, int index);
const int64_t* @NAME@_input_shape(const @NAME@_model* model, int index);
const int64_t* @NAME@_output_shape(const @NAME@_model* model, int index);

/* Binds caller-owned memory, dense and row-major, of the given element type and shape (both are
 * checked). Bindings stay until bound again; outputs are written by @NAME@_run. */
int @NAME@_bind_input(@NAME@_model* model, int index, int dtype, const int64_t* shape, int rank, const void* data);
int @NAME@_bind_output(@NAME@_model* model, int index, int dtype, const int64_t* shape, int rank, void* data);
/* On a HIP or CUDA GPU, device memory of that GPU (a hipDeviceptr_t or CUdeviceptr, checked as above,
 * starting at a multiple of 16 bytes as every allocation does) in place of host memory: the kernels read
 * and write it in place, and _run returns when the outputs are written. Binding host memory again ends
 * it. An instance on the CPU or OpenCL refuses it. */
int @NAME@_bind_input_device(@NAME@_model* model, int index, int dtype, const int64_t* shape, int rank,
                             const void* device_ptr);
int @NAME@_bind_output_device(@NAME@_model* model, int index, int dtype, const int64_t* shape, int rank,
                              void* device_ptr);
int @NAME@_run(@NAME@_model* model);

#ifdef __cplusplus
}
#endif
#endif
)";

const char* kGlueApi = R"(
int @NAME@_create(@NAME@_model** model) { return tetra_aot_create(&model_info, NULL, (tetra_aot_instance**)model); }
int @NAME@_create_from_file(const char* weights_path, @NAME@_model** model) {
  return tetra_aot_create(&model_info, weights_path ? weights_path : "", (tetra_aot_instance**)model);
}
int @NAME@_create_on(const char* device, @NAME@_model** model) {
  return tetra_aot_create_on(&model_info, NULL, device, (tetra_aot_instance**)model);
}
const char* @NAME@_device(const @NAME@_model* m) { return tetra_aot_device((const tetra_aot_instance*)m); }
const char* @NAME@_device_note(const @NAME@_model* m) { return tetra_aot_device_note((const tetra_aot_instance*)m); }
void @NAME@_destroy(@NAME@_model* model) { tetra_aot_destroy((tetra_aot_instance*)model); }
const char* @NAME@_last_error(void) { return tetra_aot_last_error(); }
int @NAME@_set_num_threads(int threads) { return tetra_aot_set_num_threads(threads); }
int @NAME@_num_inputs(const @NAME@_model* m) { return tetra_aot_count((const tetra_aot_instance*)m, 0); }
int @NAME@_num_outputs(const @NAME@_model* m) { return tetra_aot_count((const tetra_aot_instance*)m, 1); }
const char* @NAME@_input_name(const @NAME@_model* m, int i) { return tetra_aot_name((const tetra_aot_instance*)m, 0, i); }
const char* @NAME@_output_name(const @NAME@_model* m, int i) { return tetra_aot_name((const tetra_aot_instance*)m, 1, i); }
int @NAME@_input_dtype(const @NAME@_model* m, int i) { return tetra_aot_dtype((const tetra_aot_instance*)m, 0, i); }
int @NAME@_output_dtype(const @NAME@_model* m, int i) { return tetra_aot_dtype((const tetra_aot_instance*)m, 1, i); }
int @NAME@_input_rank(const @NAME@_model* m, int i) { return tetra_aot_rank((const tetra_aot_instance*)m, 0, i); }
int @NAME@_output_rank(const @NAME@_model* m, int i) { return tetra_aot_rank((const tetra_aot_instance*)m, 1, i); }
const int64_t* @NAME@_input_shape(const @NAME@_model* m, int i) { return tetra_aot_shape((const tetra_aot_instance*)m, 0, i); }
const int64_t* @NAME@_output_shape(const @NAME@_model* m, int i) { return tetra_aot_shape((const tetra_aot_instance*)m, 1, i); }
int @NAME@_bind_input(@NAME@_model* m, int i, int dtype, const int64_t* shape, int rank, const void* data) {
  return tetra_aot_bind((tetra_aot_instance*)m, 0, i, dtype, shape, rank, (void*)data);
}
int @NAME@_bind_output(@NAME@_model* m, int i, int dtype, const int64_t* shape, int rank, void* data) {
  return tetra_aot_bind((tetra_aot_instance*)m, 1, i, dtype, shape, rank, data);
}
int @NAME@_bind_input_device(@NAME@_model* m, int i, int dtype, const int64_t* shape, int rank, const void* data) {
  return tetra_aot_bind_device((tetra_aot_instance*)m, 0, i, dtype, shape, rank, (void*)data);
}
int @NAME@_bind_output_device(@NAME@_model* m, int i, int dtype, const int64_t* shape, int rank, void* data) {
  return tetra_aot_bind_device((tetra_aot_instance*)m, 1, i, dtype, shape, rank, data);
}
int @NAME@_run(@NAME@_model* m) { return tetra_aot_run((tetra_aot_instance*)m); }
)";

const char* kCMakeConfig = R"(# find_package(@NAME@): the model library compiled by tetra for @TARGET@. Target @NAME@::@NAME@ (static)@SHARED_NOTE@.
get_filename_component(_@NAME@_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET @NAME@::@NAME@)
  add_library(@NAME@::@NAME@ STATIC IMPORTED)
  set_target_properties(@NAME@::@NAME@ PROPERTIES
    IMPORTED_LOCATION "${_@NAME@_prefix}/lib/lib@NAME@.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_@NAME@_prefix}/include"
    INTERFACE_LINK_LIBRARIES "stdc++;m;pthread;dl")
@SHARED_TARGET@endif()
set(@NAME@_WEIGHTS_FILE "@WEIGHTS_PATH@")
unset(_@NAME@_prefix)
)";

const char* kSharedTarget = R"(  add_library(@NAME@::shared SHARED IMPORTED)
  set_target_properties(@NAME@::shared PROPERTIES
    IMPORTED_LOCATION "${_@NAME@_prefix}/lib/lib@NAME@.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_@NAME@_prefix}/include")
)";

const char* kPkgConfig = R"(prefix=${pcfiledir}/../..
libdir=${prefix}/lib
includedir=${prefix}/include

Name: @NAME@
Description: the model '@MODEL@' compiled by tetra for @TARGET@
Version: 1.0
Libs: -L${libdir} -l@NAME@ -lstdc++ -lm -lpthread -ldl
Cflags: -I${includedir}
)";

const std::vector<std::string> kApiSuffixes = {
    "create",      "create_from_file", "destroy",      "last_error",        "set_num_threads",   "num_inputs",
    "num_outputs", "input_name",       "output_name",  "input_dtype",       "output_dtype",      "input_rank",
    "output_rank", "input_shape",      "output_shape", "bind_input",        "bind_output",       "run",
    "create_on",   "device",           "device_note",  "bind_input_device", "bind_output_device"};

}  // namespace

std::string default_runtime_lib_dir() {
  if (const char* dir = std::getenv("TETRA_LIB_DIR"); dir && *dir) return dir;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "lib" : (exe.parent_path().parent_path() / "lib").string();
}

LibraryReport compile_model_library(const Graph& model, const TensorMap& sample_inputs, const LibraryOptions& opt,
                                    std::ostream& log) {
  // The inputs and outputs with the shapes inference gave them (dynamic dims bound).
  Graph graph = model;
  for (auto* list : {&graph.inputs, &graph.outputs})
    for (ValueInfo& v : *list)
      if (const ValueInfo* inferred = graph.find_value(v.name)) v = *inferred;
  const std::string& name = opt.name;
  check(std::regex_match(name, std::regex("[A-Za-z_][A-Za-z0-9_]*")), ErrorKind::Invalid,
        "--name '" + name + "' must be a C identifier: it prefixes the library's functions");
  const Halide::Target& ht = opt.target.halide;
  check(opt.target.is_cpu() && ht.arch == Halide::Target::X86 && ht.bits == 64, ErrorKind::Unsupported,
        "model libraries are built for x86-64 CPU targets; '" + opt.target.name +
            "' would need its runtime cross-compiled as well");
  // As `run` and `tune`: a library holds only code this machine can execute, so its kernels are the ones
  // tetra can check and time here.
  dsl::Status runs = dsl::runs_on_host(opt.target);
  check(runs.ok(), ErrorKind::Unsupported,
        runs.ok() ? "" : "cannot build a library for " + opt.target.name + ": " + runs.failure().message);
  for (const ValueInfo& in : graph.inputs)
    check(in.has_shape && fully_known(in.shape), ErrorKind::Invalid,
          "input '" + in.name + "' has the shape " + shape_str(in.shape) +
              ": a library is compiled for fixed shapes; bind its dims with --shape " + in.name + "=...");
  for (const ValueInfo& o : graph.outputs)
    check(o.has_shape && fully_known(o.shape), ErrorKind::Invalid,
          "output '" + o.name + "' has the shape " + shape_str(o.shape) + " after inference: it must be fixed");
  check(!opt.weights_file || opt.gpu_targets.empty(), ErrorKind::Unsupported,
        "--weights-file keeps the CPU kernels' weights beside the library; the GPU jobs' packed weights are "
        "built in: compile GPU targets without it");
  fs::path lib_dir(opt.runtime_lib_dir);
  for (const char* archive : {"libtetra_core.a", "libtetra_aot_runtime.a"})
    check(fs::exists(lib_dir / archive), ErrorKind::Io,
          std::string("cannot find ") + archive + " in '" + lib_dir.string() + "' (set TETRA_LIB_DIR)");

  fs::path out(opt.out_dir);
  StagingFolder staging(out);
  const fs::path& work = staging.path();

  // 1. The kernels the model asks for at these shapes.
  auto recorder = std::make_shared<RecordingSource>(opt.kernel_cache);
  Executor(graph, recorder).run(sample_inputs);

  // 2. Each compiled ahead of time for the target, with the target's schedule; equal code once.
  LibraryReport report;
  std::vector<TableEntry> table;
  std::map<std::string, std::string> function_of_code;
  std::vector<fs::path> objects;
  nlohmann::json manifest = nlohmann::json::array();
  for (const auto& [key, request] : recorder->requests) {
    KernelPlan plan = plan_kernel(request, opt.schedules, opt.target);
    auto [it, fresh] = function_of_code.emplace(plan.code_key, name + "_k" + std::to_string(function_of_code.size()));
    const std::string& function = it->second;
    if (fresh) {
      auto scheduled = plan.define();
      check(scheduled.ok(), ErrorKind::Invalid,
            request.node + ": cannot define " + key + ": " + (scheduled.ok() ? "" : scheduled.failure().describe()));
      fs::path object = work / (function + ".o");
      dsl::Status st = dsl::compile_to_object(scheduled.value(), object.string(), function,
                                              plan.halide.with_feature(Halide::Target::NoRuntime));
      check(st.ok(), ErrorKind::Invalid, request.node + ": cannot compile " + key + ": " + (st.ok() ? "" : st.failure().describe()));
      objects.push_back(object);
      ++report.kernels;
      if (plan.info.source.rfind("database", 0) == 0) ++report.tuned;
    }
    std::string source = plan.info.schedule.empty() ? "fixed pipeline" : plan.info.source;
    log << "kernel " << function << "  " << key << "\n    " << source
        << (plan.info.schedule.empty() ? "" : ": " + plan.info.schedule) << "\n";
    const bool has_spec = request.kind == KernelRequest::Kind::QMatMul || request.kind == KernelRequest::Kind::QConv;
    const std::string spec = has_spec ? plan.info.spec.to_json().dump() : "";
    table.push_back({key, function, source, plan.info, spec});
    manifest.push_back({{"key", key}, {"function", function}, {"schedule", plan.info.schedule}, {"source", source}});
    if (has_spec) manifest.back()["spec"] = plan.info.spec.to_json();
  }
  fs::path runtime_object = work / "halide_runtime.o";
  try {
    Halide::compile_standalone_runtime(runtime_object.string(), ht);
  } catch (const Halide::Error& e) {
    fail(ErrorKind::Invalid, std::string("cannot compile the Halide runtime: ") + e.what());
  }
  objects.push_back(runtime_object);

  // 3. The graph, built in or beside the library.
  std::vector<uint8_t> blob = serialize_graph(graph);
  fs::path blob_path = work / (name + (opt.weights_file ? ".weights" : ".graph"));
  write_file(blob_path, blob.data(), blob.size());

  // 3b. Per GPU target, the model as one GPU job. Its inputs are written at each run: their sample
  // contents stay out.
  struct EmbeddedJob {
    const dsl::TargetSpec* target;
    fs::path job;
    std::vector<std::pair<std::string, fs::path>> files;  // as the job names them; the program first
  };
  std::vector<EmbeddedJob> gpu_jobs;
  nlohmann::json gpu_manifest = nlohmann::json::array();
  std::string gpu_targets;
  for (size_t i = 0; i < opt.gpu_targets.size(); ++i) {
    const dsl::TargetSpec& target = opt.gpu_targets[i];
    const fs::path dir = work / "gpu" / std::to_string(i);
    dsl::Result<GpuModelJob> built = write_gpu_model_job(
        graph, sample_inputs, target, i < opt.gpu_schedules.size() ? opt.gpu_schedules[i] : nullptr, dir.string());
    check(
        built.ok(), ErrorKind::Unsupported,
        "cannot build the model's GPU job for " + target.name + ": " + (built.ok() ? "" : built.failure().describe()));
    std::ifstream in(built.value().job_file);
    nlohmann::json job = nlohmann::json::parse(in);
    for (const auto& [input, buffer] : job["model"]["inputs"].items())
      job["buffers"][buffer.get<std::string>()].erase("file");
    EmbeddedJob e{&target,
                  dir / "library_job.json",
                  {{job["source"].get<std::string>(), dir / job["source"].get<std::string>()}}};
    for (const auto& [buffer, b] : job["buffers"].items())
      if (b.contains("file")) e.files.push_back({b["file"].get<std::string>(), dir / b["file"].get<std::string>()});
    write_text(e.job, job.dump());
    gpu_jobs.push_back(e);
    nlohmann::json nodes = nlohmann::json::array();
    for (const auto& [node, what] : built.value().kernels) nodes.push_back({{"node", node}, {"kernels", what}});
    gpu_manifest.push_back({{"target", target.name},
                            {"launches", built.value().launches},
                            {"weight_bytes", built.value().weight_bytes},
                            {"nodes", nodes}});
    gpu_targets += (gpu_targets.empty() ? "" : ",") + target.name;
    log << "GPU job for " << target.name << ": " << built.value().launches << " launches, "
        << built.value().weight_bytes << " weight bytes" << std::endl;
  }

  // 4. The glue: kernel table, model data, the API.
  auto fill = [&](std::string text) {
    text = replace_all(text, "@GPU_TARGETS@", gpu_targets);
    text = replace_all(text, "@NAME@", name);
    text = replace_all(text, "@TARGET@", opt.target.name);
    return replace_all(text, "@MODEL@", graph.name);
  };
  std::ostringstream glue;
  glue << "/* Generated by tetra compile: the glue of model library " << name << ". */\n";
  glue << kAotAbiText << "\n#include \"" << name << ".h\"\n\n";
  for (const auto& [code, function] : function_of_code) glue << "extern int " << function << "_argv(void**);\n";
  glue << "\nstatic const tetra_aot_kernel kernels[] = {\n";
  for (const TableEntry& e : table) {
    glue << "  {" << c_string(e.key) << ", " << e.function << "_argv, " << c_string(e.info.schedule) << ", "
         << c_string(e.source) << ", " << c_string(e.spec) << ", " << e.info.layout.panel << ", "
         << e.info.layout.k_align << "},\n";
  }
  glue << "};\n\n";
  // Bytes read by the assembler straight from a file (weights can be hundreds of MiB), as `symbol`, in
  // `section`; a tetra_aot_file entry naming them `entry_name`.
  auto incbin = [&](const std::string& symbol, const fs::path& file, const std::string& section,
                    const std::string& entry_name) {
    glue << "extern const unsigned char " << symbol << "[];\n";
    glue << "__asm__(\".section " << section << ",\\\"a\\\",@progbits\\n.balign 64\\n"
         << symbol << ":\\n.incbin " << replace_all(c_string(fs::absolute(file).string()), "\"", "\\\"")
         << "\\n.previous\");\n";
    return "{" + c_string(entry_name) + ", " + symbol + ", " + std::to_string(fs::file_size(file)) + "ull}";
  };
  if (!opt.weights_file) incbin(name + "_graph", blob_path, ".rodata", "");
  // Each GPU job's files; its program in a section named for its target, where tools find it
  // (objcopy --dump-section).
  std::vector<std::string> job_entries;
  for (size_t j = 0; j < gpu_jobs.size(); ++j) {
    const EmbeddedJob& e = gpu_jobs[j];
    const std::string prefix = name + "_gpu" + std::to_string(j);
    std::string section = ".rodata.tetra_program." + e.target->name;
    for (char& c : section)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '_';
    std::vector<std::string> files;
    for (size_t k = 0; k < e.files.size(); ++k) {
      files.push_back(
          incbin(prefix + "_f" + std::to_string(k), e.files[k].second, k == 0 ? section : ".rodata", e.files[k].first));
    }
    const std::string job = incbin(prefix + "_job", e.job, ".rodata", "job.json");
    glue << "static const tetra_aot_file " << prefix << "_files[] = {";
    for (const std::string& f : files) glue << f << ", ";
    glue << "};\n";
    const std::string dialect = dsl::gpu::dialect_name(dsl::gpu::dialect_of(e.target->family));
    job_entries.push_back("{" + c_string(e.target->name) + ", " + c_string(dialect) + ", " +
                          c_string(e.target->gpu_arch) + ", " + job + ", " + prefix + "_files, " +
                          std::to_string(files.size()) + "}");
  }
  if (!job_entries.empty()) {
    glue << "static const tetra_aot_gpu_job gpu_jobs[] = {\n";
    for (const std::string& e : job_entries) glue << "  " << e << ",\n";
    glue << "};\n\n";
  }
  glue << "static const tetra_aot_model model_info = {TETRA_AOT_ABI_VERSION, " << c_string(name) << ", "
       << c_string(opt.target.name) << ", " << (opt.weights_file ? "NULL" : name + "_graph") << ", " << blob.size()
       << "ull, " << fnv1a64(blob.data(), blob.size()) << "ull, kernels, " << table.size() << ", "
       << opt.target.natural_lanes(Halide::Float(32)) << ", " << (job_entries.empty() ? "NULL" : "gpu_jobs") << ", "
       << job_entries.size() << "};\n";
  glue << fill(kGlueApi);
  glue << dsl::kParForChunksSource;
  std::string weights_define =
      opt.weights_file ? "#define " + name + "_WEIGHTS_FILE \"" + name + ".weights\" /* create it with _create_from_file */\n" : "";
  write_text(work / "include" / (name + ".h"), replace_all(fill(kHeader), "@WEIGHTS_DEFINE@", weights_define));
  fs::path glue_c = work / (name + "_glue.c"), glue_o = work / (name + "_glue.o");
  write_text(glue_c, glue.str());
  run_tool(with_args(tool("CC", "cc"), {"-O2", "-fPIC", "-c", "-I" + (work / "include").string(), glue_c.string(), "-o",
                                         glue_o.string()}),
           "compiling the library glue");
  objects.push_back(glue_o);

  // 5. The archive: the kernels, one Halide runtime, the glue and tetra's runtime.
  fs::path archive = work / "lib" / ("lib" + name + ".a");
  fs::create_directories(archive.parent_path());
  std::ostringstream mri;
  mri << "create " << archive.string() << "\n";
  for (const char* lib : {"libtetra_aot_runtime.a", "libtetra_core.a"}) mri << "addlib " << (lib_dir / lib).string() << "\n";
  for (const fs::path& o : objects) mri << "addmod " << o.string() << "\n";
  mri << "save\nend\n";
  fs::path mri_path = work / "archive.mri";
  write_text(mri_path, mri.str());
  run_tool(with_args(tool("AR", "ar"), {"-M"}), "building the static library", mri_path);
  report.files.push_back("lib/lib" + name + ".a");

  if (opt.shared) {
    std::ostringstream version;
    version << "{\n  global:\n";
    for (const std::string& s : kApiSuffixes) version << "    " << name << "_" << s << ";\n";
    version << "  local: *;\n};\n";
    fs::path script = work / "exports.map";
    write_text(script, version.str());
    run_tool(with_args(tool("CXX", "c++"), {"-shared", "-o", (work / "lib" / ("lib" + name + ".so")).string(),
                                            "-Wl,--whole-archive", archive.string(), "-Wl,--no-whole-archive",
                                            "-Wl,--version-script=" + script.string(), "-Wl,-Bsymbolic", "-lpthread",
                                            "-ldl", "-lm"}),
             "building the shared library");
    report.files.push_back("lib/lib" + name + ".so");
  }
  std::string cmake = replace_all(fill(kCMakeConfig), "@SHARED_TARGET@", opt.shared ? fill(kSharedTarget) : "");
  cmake = replace_all(cmake, "@SHARED_NOTE@", opt.shared ? " and @NAME@::shared" : "");
  cmake = replace_all(cmake, "@NAME@", name);
  cmake = replace_all(cmake, "@WEIGHTS_PATH@", opt.weights_file ? "${_" + name + "_prefix}/" + name + ".weights" : "");
  write_text(work / "lib" / "cmake" / name / (name + "Config.cmake"), cmake);
  write_text(work / "lib" / "pkgconfig" / (name + ".pc"), fill(kPkgConfig));
  const nlohmann::json kernels_json =
      gpu_jobs.empty() ? manifest : nlohmann::json{{"host", manifest}, {"gpu", gpu_manifest}};
  write_text(work / (name + ".kernels.json"), kernels_json.dump(2) + "\n");
  report.files.push_back("include/" + name + ".h");
  report.files.push_back("lib/cmake/" + name + "/" + name + "Config.cmake");
  report.files.push_back("lib/pkgconfig/" + name + ".pc");
  report.files.push_back(name + ".kernels.json");
  if (opt.weights_file) report.files.push_back(name + ".weights");

  // 6. Into place, each file by a rename.
  for (const std::string& file : report.files) staging.publish(file);
  return report;
}

}  // namespace tetra
