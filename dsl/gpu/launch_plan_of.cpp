#include "dsl/gpu/launch_plan_of.h"

#include <sstream>

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

std::string param_type_name(const Type& t) {
  if (t.lanes() != 1) return "";
  if (t.is_float()) return t.bits() == 32 ? "f32" : t.bits() == 16 ? "f16" : "";
  if (t.is_bool()) return "i32";  // kernels take no bool parameters (OpenCL forbids them): an int 0 or 1
  if (t.is_int() || t.is_uint()) {
    if (t.bits() != 8 && t.bits() != 16 && t.bits() != 32 && t.bits() != 64) return "";
    return (t.is_int() ? "i" : "u") + std::to_string(t.bits());
  }
  return "";
}

Result<nlohmann::json> job_buffer_entry(const std::string& name, const halide_buffer_t& b, int64_t* span_bytes) {
  const std::string type = param_type_name(Type(b.type));
  if (type.empty()) return Failure{FailureKind::Unsupported, name, "a device job holds no buffers of its type"};
  nlohmann::json extents = nlohmann::json::array(), strides = nlohmann::json::array();
  int64_t dense = 1, last = 0;
  bool is_dense = true, empty = false;
  for (int d = 0; d < b.dimensions; ++d) {
    const halide_dimension_t& dim = b.dim[d];
    if (dim.min != 0 || dim.stride <= 0)
      return Failure{FailureKind::Unsupported, name, "a device job's buffers start at 0 with positive strides"};
    extents.push_back(dim.extent);
    strides.push_back(dim.stride);
    is_dense = is_dense && dim.stride == dense;
    dense *= dim.extent;
    empty = empty || dim.extent == 0;
    last += int64_t(dim.extent - 1) * dim.stride;
  }
  *span_bytes = empty ? 0 : (last + 1) * b.type.bytes();
  nlohmann::json entry = {{"type", type}, {"extents", extents}};
  if (!is_dense) entry["strides"] = strides;
  return entry;
}

namespace {

// The name the host binds: Halide numbers Funcs that share a name ("qmatmul$5"), which depends on what
// else the process built, so the number is dropped ("qmatmul", "qmatmul.extent.0").
std::string host_name(const std::string& name) {
  size_t dollar = name.find('$');
  if (dollar == std::string::npos) return name;
  size_t end = name.find_first_not_of("0123456789", dollar + 1);
  return name.substr(0, dollar) + (end == std::string::npos ? "" : name.substr(end));
}

Result<IndexExpr> index_expr(const Expr& e, const std::string& kernel) {
  auto bad = [&] {
    std::ostringstream s;
    s << "the launch value " << e << " is not an integer expression of buffer fields and scalar parameters";
    return Failure{FailureKind::Unsupported, kernel, s.str()};
  };
  if (const int64_t* c = as_const_int(e)) return IndexExpr::constant(*c);
  if (const uint64_t* c = as_const_uint(e)) return IndexExpr::constant(int64_t(*c));
  if (const Variable* v = e.as<Variable>()) return IndexExpr::named(host_name(v->name));
  if (const Cast* c = e.as<Cast>()) {
    if (c->type.is_int() && c->value.type().is_int() && c->type.bits() >= c->value.type().bits())
      return index_expr(c->value, kernel);  // widening keeps the value
    return bad();
  }
  auto binary = [&](IndexExpr::Op op, const Expr& a, const Expr& b) -> Result<IndexExpr> {
    Result<IndexExpr> x = index_expr(a, kernel), y = index_expr(b, kernel);
    if (!x) return x.failure();
    if (!y) return y.failure();
    return IndexExpr{op, 0, "", {x.value(), y.value()}};
  };
  if (const Add* o = e.as<Add>()) return binary(IndexExpr::Op::Add, o->a, o->b);
  if (const Sub* o = e.as<Sub>()) return binary(IndexExpr::Op::Sub, o->a, o->b);
  if (const Mul* o = e.as<Mul>()) return binary(IndexExpr::Op::Mul, o->a, o->b);
  if (const Div* o = e.as<Div>()) return binary(IndexExpr::Op::Div, o->a, o->b);
  if (const Mod* o = e.as<Mod>()) return binary(IndexExpr::Op::Mod, o->a, o->b);
  if (const Min* o = e.as<Min>()) return binary(IndexExpr::Op::Min, o->a, o->b);
  if (const Max* o = e.as<Max>()) return binary(IndexExpr::Op::Max, o->a, o->b);
  if (const LT* o = e.as<LT>()) return binary(IndexExpr::Op::Lt, o->a, o->b);
  if (const LE* o = e.as<LE>()) return binary(IndexExpr::Op::Le, o->a, o->b);
  if (const GT* o = e.as<GT>()) return binary(IndexExpr::Op::Lt, o->b, o->a);
  if (const GE* o = e.as<GE>()) return binary(IndexExpr::Op::Le, o->b, o->a);
  if (const EQ* o = e.as<EQ>()) return binary(IndexExpr::Op::Eq, o->a, o->b);
  if (const NE* o = e.as<NE>()) return binary(IndexExpr::Op::Ne, o->a, o->b);
  if (const And* o = e.as<And>()) return binary(IndexExpr::Op::And, o->a, o->b);
  if (const Or* o = e.as<Or>()) return binary(IndexExpr::Op::Or, o->a, o->b);
  if (const Not* o = e.as<Not>()) {
    Result<IndexExpr> x = index_expr(o->a, kernel);
    if (!x) return x.failure();
    return IndexExpr{IndexExpr::Op::Not, 0, "", {x.value()}};
  }
  if (const Select* o = e.as<Select>()) {
    Result<IndexExpr> c = index_expr(o->condition, kernel), x = index_expr(o->true_value, kernel),
                      y = index_expr(o->false_value, kernel);
    if (!c) return c.failure();
    if (!x) return x.failure();
    if (!y) return y.failure();
    return IndexExpr{IndexExpr::Op::Select, 0, "", {c.value(), x.value(), y.value()}};
  }
  return bad();
}

}  // namespace

Result<LaunchPlan> launch_plan_of(const DeviceKernel& k) {
  LaunchPlan plan;
  plan.kernel = k.name;
  plan.shared_bytes = k.shared_bytes;
  for (size_t i = 0; i < k.args.size(); ++i) {
    const DeviceArgument& a = k.args[i];
    KernelParam p;
    p.name = host_name(a.name);
    for (const KernelParam& q : plan.params)
      if (q.name == p.name)
        return Failure{FailureKind::Unsupported, k.name, "parameters " + a.name + " and " + q.name + " share a name"};
    p.is_buffer = a.is_buffer;
    p.type = param_type_name(a.type);
    p.read = a.is_buffer && a.read;
    p.write = a.is_buffer && a.write;
    if (p.type.empty())
      return Failure{FailureKind::Unsupported, k.name, "parameter " + a.name + " has a type kernels cannot take"};
    if (!a.is_buffer && a.type.is_float() && a.type.bits() != 32)
      return Failure{FailureKind::Unsupported, k.name, "scalar parameter " + a.name + ": float scalars are float32 only"};
    if (!a.is_buffer && a.type.is_float()) {
      p.value = IndexExpr::named(p.name);  // a float parameter of the pipeline, given as it is
    } else if (!a.is_buffer) {
      Result<IndexExpr> v = index_expr(k.arg_values.at(i), k.name);
      if (!v) return v.failure();
      p.value = v.value();
    }
    plan.params.push_back(p);
  }
  for (size_t i = 0; i < 3; ++i) {
    Result<IndexExpr> b = index_expr(k.blocks[i], k.name), t = index_expr(k.threads[i], k.name);
    if (!b) return b.failure();
    if (!t) return t.failure();
    plan.blocks[i] = b.value();
    plan.threads[i] = t.value();
  }
  for (const DeviceKernel::Touched& t : k.touched) {
    Result<IndexExpr> min = index_expr(t.min, k.name), max = index_expr(t.max, k.name);
    if (!min) return min.failure();
    if (!max) return max.failure();
    plan.touched.push_back({host_name(t.buffer), t.dim, min.value(), max.value()});
  }
  return plan;
}

}  // namespace tetra::dsl::gpu
