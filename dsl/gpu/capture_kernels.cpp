#include "dsl/gpu/capture_kernels.h"

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "dsl/gpu/double_buffer.h"
#include "dsl/gpu/private_arrays.h"
#include "dsl/gpu/vector_loads.h"

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

namespace {

// The launch extents and the workgroup memory of one kernel's loop nest.
class KernelShape : public IRVisitor {
 public:
  Expr blocks[3] = {1, 1, 1}, threads[3] = {1, 1, 1};
  int64_t shared_bytes = 0;
  std::string error;

 private:
  using IRVisitor::visit;
  void visit(const For* op) override {
    bool block = false;
    int axis = gpu_loop_axis(op->name, &block);
    if (axis >= 0) (block ? blocks : threads)[axis] = op->extent;
    IRVisitor::visit(op);
  }
  void visit(const Allocate* op) override {
    if (op->memory_type == MemoryType::GPUShared) {
      const int64_t elements = op->constant_allocation_size();
      if (elements > 0)
        shared_bytes += elements * op->type.bytes();
      else {
        std::ostringstream extents;
        for (const Expr& e : op->extents) extents << "[" << e << "]";
        error = "the shared allocation " + op->name + " has no constant size " + extents.str() +
                " (split its loops with TailStrategy::GuardWithIf)";
      }
    }
    IRVisitor::visit(op);
  }
};

// The scalar variables an expression reads.
class FreeVariables : public IRVisitor {
 public:
  std::vector<std::pair<std::string, Type>> found;

 private:
  using IRVisitor::visit;
  void visit(const Variable* op) override {
    for (const auto& f : found)
      if (f.first == op->name) return;
    found.emplace_back(op->name, op->type);
  }
};

// Gives each shared allocation whose size the host computes (Halide sizes an allocation for a guarded
// tail from the loop bounds) the constant upper bound of that size, found by `bound`; workgroup memory
// is declared with a constant size in every dialect. One without a constant bound is left as it was.
class ConstantSharedSizes : public IRMutator {
 public:
  explicit ConstantSharedSizes(std::function<Expr(const Expr&)> bound) : bound_(std::move(bound)) {}

 private:
  using IRMutator::visit;
  Stmt visit(const Allocate* op) override {
    Stmt body = mutate(op->body);
    if (op->memory_type != MemoryType::GPUShared || op->constant_allocation_size() > 0)
      return Allocate::make(op->name, op->type, op->memory_type, op->extents, op->condition, body, op->new_expr,
                            op->free_function);
    std::vector<Expr> extents;
    for (const Expr& e : op->extents) {
      Expr b = bound_(e);
      extents.push_back(b.defined() && as_const_int(b) ? b : e);
    }
    return Allocate::make(op->name, op->type, op->memory_type, extents, op->condition, body, op->new_expr,
                          op->free_function);
  }
  std::function<Expr(const Expr&)> bound_;
};

// The lowering pass: records every outermost GPU block loop nest as a kernel.
class CaptureKernels : public IRMutator {
 public:
  CaptureKernels(std::string name, CapturedPipeline* out, std::string* error, GpuKernelHints hints,
                 std::set<std::string>* double_buffered)
      : name_(std::move(name)), out_(out), error_(error), hints_(std::move(hints)), double_buffered_(double_buffered) {}

  Stmt mutate(const Stmt& s) override {
    if (!seen_top_) {  // the whole lowered statement: keep it as the host's
      seen_top_ = true;
      Stmt result = IRMutator::mutate(s);
      out_->host = result;
      return result;
    }
    return IRMutator::mutate(s);
  }
  using IRMutator::mutate;

 private:
  Stmt visit(const For* op) override {
    if (op->for_type != ForType::GPUBlock) return IRMutator::visit(op);
    DeviceKernel k;
    k.name = name_ + "_k" + std::to_string(out_->kernels.size());
    k.body = ConstantSharedSizes([&](const Expr& e) {
               return find_constant_bound(in_inputs(e), Direction::Upper);
             }).mutate(Stmt(op));
    if (Result<Stmt> buffered = double_buffer_chunks(k.body, hints_.double_buffered, double_buffered_); buffered.ok())
      k.body = buffered.value();
    else if (error_->empty())
      *error_ = buffered.failure().describe();
    if (Result<Stmt> summed = lower_lane_sums(k.body, hints_.lane_sums); summed.ok())
      k.body = summed.value();
    else if (error_->empty())
      *error_ = summed.failure().describe();
    k.body = localize_private_arrays(k.body);
    k.body = with_constrained_fields(k.body);
    HostClosure closure;
    k.body.accept(&closure);
    k.args = closure.arguments();
    std::set<std::string> read_only;
    for (const DeviceArgument& a : k.args)
      if (a.is_buffer && !a.write) read_only.insert(a.name);
    for (const std::string& s : hints_.streamed_inputs)
      if (read_only.count(s)) k.streamed_buffers.insert(s);
    k.body = combine_vector_loads(k.body, read_only);
    KernelShape shape;
    k.body.accept(&shape);
    if (!shape.error.empty() && error_->empty()) *error_ = shape.error;
    for (int i = 0; i < 3; ++i) k.blocks[i] = in_inputs(shape.blocks[i]), k.threads[i] = in_inputs(shape.threads[i]);
    for (const DeviceArgument& a : k.args)
      k.arg_values.push_back(a.is_buffer ? Expr() : in_inputs(Variable::make(a.type, a.name)));
    k.shared_bytes = shape.shared_bytes;
    out_->kernels.push_back(std::move(k));
    return op;  // CapturedPipeline::host keeps the loop as Halide lowered it
  }

  // `body` with each buffer field that the pipeline constrains (ImageParam::dim(i).set_stride(expr))
  // replaced by its constraint, which the host asserts before any launch: the device compiler then
  // knows what Halide was told, e.g. that a packed weight's panels start at multiples of its row.
  Stmt with_constrained_fields(const Stmt& body) const {
    FreeVariables vars;
    body.accept(&vars);
    std::map<std::string, Expr> known;
    for (const auto& var : vars.found)
      if (auto it = constrained_.find(var.first); it != constrained_.end()) known[var.first] = in_inputs(it->second);
    return known.empty() ? body : substitute(known, body);
  }

  // Halide's check of a constraint: assert(A.stride.2 == (A.extent.1*64), ...); and of the elements a
  // buffer must hold: assert(..., halide_error_access_out_of_bounds("Input buffer W", 2, min touched, max
  // touched, W.min.2, ...)).
  Stmt visit(const AssertStmt* op) override {
    const EQ* eq = op->condition.as<EQ>();
    const Variable* field = eq ? eq->a.as<Variable>() : nullptr;
    const Call* message = op->message.as<Call>();
    if (field && is_buffer_field(field->name) && message && message->name == "halide_error_constraint_violated")
      constrained_[field->name] = eq->b;
    if (message && message->name == "halide_error_access_out_of_bounds" && message->args.size() >= 5) {
      const int64_t* dim = as_const_int(message->args[1]);
      const Variable* min = message->args[4].as<Variable>();  // the buffer's own min: "W.min.2"
      const std::string field = ".min." + (dim ? std::to_string(*dim) : "");
      if (dim && min && min->name.size() > field.size() &&
          min->name.compare(min->name.size() - field.size(), field.size(), field) == 0)
        out_->touched.push_back({min->name.substr(0, min->name.size() - field.size()), int(*dim),
                                 in_inputs(message->args[2]), in_inputs(message->args[3])});
    }
    return IRMutator::visit(op);
  }

  // A buffer's min, extent or stride, which the launch is given: "A.extent.0".
  static bool is_buffer_field(const std::string& name) {
    for (const char* field : {".min.", ".extent.", ".stride."}) {
      size_t at = name.rfind(field);
      if (at != std::string::npos && at > 0 && at + std::strlen(field) < name.size() &&
          name.find_first_not_of("0123456789", at + std::strlen(field)) == std::string::npos)
        return true;
    }
    return false;
  }

  // `e` in terms of the launch's inputs: the host's lets it reads substituted, innermost binding first,
  // until only buffer fields and the pipeline's own scalar parameters remain; and the lets inside it, which
  // neither the launch's evaluator nor Halide's constant bounds see through.
  Expr in_inputs(Expr e) const {
    for (int round = 0; round < 64; ++round) {
      FreeVariables vars;
      e.accept(&vars);
      bool changed = false;
      for (const auto& var : vars.found) {
        if (is_buffer_field(var.first)) continue;
        for (auto let = lets_.rbegin(); let != lets_.rend(); ++let)
          if (let->first == var.first) {
            e = substitute(let->first, let->second, e);
            changed = true;
            break;
          }
      }
      if (!changed) break;
    }
    return simplify(substitute_in_all_lets(e));
  }

  Stmt visit(const LetStmt* op) override {
    lets_.emplace_back(op->name, op->value);
    Stmt s = IRMutator::visit(op);
    lets_.pop_back();
    return s;
  }

  std::vector<std::pair<std::string, Expr>> lets_;  // the host's lets around the current statement
  std::map<std::string, Expr> constrained_;         // buffer fields the host asserts equal to an expression
  std::string name_;
  CapturedPipeline* out_;
  std::string* error_;
  GpuKernelHints hints_;
  std::set<std::string>* double_buffered_;  // the loops of hints_.double_buffered rewritten so far
  bool seen_top_ = false;
};

}  // namespace

Result<CapturedPipeline> capture_kernels(const std::vector<Func>& outputs, const std::vector<Argument>& args,
                                         const std::string& name, const GpuKernelHints& hints) {
  CapturedPipeline captured;
  std::string error;
  std::set<std::string> double_buffered;
  try {
    Pipeline pipeline(outputs);
    pipeline.add_custom_lowering_pass(new CaptureKernels(name, &captured, &error, hints, &double_buffered));
    // The stand-in GPU feature: Halide validates GPU schedules only for a target with one (with
    // float16, which every AMD GPU has).
    Target stand_in = Target("x86-64-linux-opencl-cl_half");
    pipeline.compile_to_module(args, name, stand_in);
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, name, e.what()};
  }
  if (!error.empty()) return Failure{FailureKind::Unsupported, name, error};
  for (const std::string& loop : hints.double_buffered)
    if (!double_buffered.count(loop))
      return Failure{FailureKind::Unsupported, name, "no kernel has the chunk loop " + loop + " to double-buffer"};
  // Every buffer a kernel takes must be one the launch is given. Anything else is an intermediate Halide
  // placed in device global memory, which no launch allocates.
  std::set<std::string> given;
  for (const Argument& a : args)
    if (a.is_buffer()) given.insert(a.name);
  for (const Func& f : outputs) given.insert(f.name());
  for (const DeviceKernel& k : captured.kernels)
    for (const DeviceArgument& a : k.args)
      if (a.is_buffer && !given.count(a.name))
        return Failure{FailureKind::Unsupported, k.name,
                       "the intermediate " + a.name +
                           " would live in device global memory: compute it inside the kernel, in registers "
                           "(store_in(MemoryType::Register)) or workgroup memory (MemoryType::GPUShared)"};
  if (captured.kernels.empty())
    return Failure{FailureKind::Unsupported, name, "no GPU block loop: not scheduled for a GPU"};
  for (DeviceKernel& k : captured.kernels)
    for (const DeviceKernel::Touched& t : captured.touched)
      for (const DeviceArgument& a : k.args)
        if (a.is_buffer && a.name == t.buffer) k.touched.push_back(t);
  return captured;
}

}  // namespace tetra::dsl::gpu
