#include "dsl/jit_pipeline.h"

#include <mutex>

#include "dsl/target.h"

namespace tetra::dsl {

std::string code_key(const std::string& code, const Halide::Target& target) {
  return code + " | " + target.to_string() + " | " + toolchain_id();
}

std::vector<Halide::Argument> ScheduledPipeline::arguments() const {
  std::vector<Halide::Argument> args;
  for (const PipelineParam& p : params) std::visit([&](const auto& param) { args.push_back(param); }, p);
  return args;
}

namespace {

class JitPipeline : public CompiledPipeline {
 public:
  JitPipeline(ScheduledPipeline p, Halide::Target target) : p_(std::move(p)), target_(std::move(target)) {}

  int call(void** argv) const override {
    Halide::ParamMap params;
    size_t i = 0;
    for (const PipelineParam& param : p_.params) {
      void* arg = argv[i++];
      if (auto* image = std::get_if<Halide::ImageParam>(&param))
        params.set(*image, Halide::Buffer<>(*static_cast<halide_buffer_t*>(arg)));
      else if (auto* f = std::get_if<Halide::Param<float>>(&param))
        params.set(*f, *static_cast<float*>(arg));
      else
        params.set(std::get<Halide::Param<int>>(param), *static_cast<int*>(arg));
    }
    Halide::Buffer<> output(*static_cast<halide_buffer_t*>(argv[i]));
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      Halide::Pipeline pipeline = p_.pipeline;  // a handle: realize() is not const
      pipeline.realize(output, target_, params);
    } catch (const Halide::Error& e) {
      set_last_pipeline_error(e.what());
      return halide_error_code_generic_error;
    }
    return 0;
  }

 private:
  ScheduledPipeline p_;
  Halide::Target target_;
  mutable std::mutex mutex_;
};

}  // namespace

Result<std::shared_ptr<const CompiledPipeline>> jit_compile(const ScheduledPipeline& p, const Halide::Target& target) {
  try {
    Halide::Pipeline pipeline = p.pipeline;
    pipeline.compile_jit(target);
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, "jit", e.what()};
  }
  return std::shared_ptr<const CompiledPipeline>(std::make_shared<JitPipeline>(p, target));
}

Status compile_to_object(const ScheduledPipeline& p, const std::string& path, const std::string& function,
                         const Halide::Target& target) {
  try {
    Halide::Pipeline pipeline = p.pipeline;
    pipeline.compile_to_object(path, p.arguments(), function, target);
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, function, e.what()};
  }
  return ok_status();
}

}  // namespace tetra::dsl
