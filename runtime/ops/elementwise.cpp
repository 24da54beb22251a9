// Elementwise operators of the reference evaluator: activations and unary math, broadcasting
// arithmetic and comparison, Where, Clip, Identity, and the Cast family.
//
// Floats are computed in double and rounded once into the output type (Tensor::set); integers are
// computed in int64 and wrap into narrower types as C and numpy do (Tensor::set_int).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "runtime/ops/op_util.h"

namespace tetra {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------------
// Shared helpers

// The element types an operator takes, as ONNX's type constraints restricted to tetra's types.
enum class Accepts { Float, FloatOrSigned, Numeric, Bool, Any };

bool accepts(Accepts a, DType t) {
  switch (a) {
    case Accepts::Float: return is_float(t);
    case Accepts::FloatOrSigned: return is_float(t) || is_signed_int(t);
    case Accepts::Numeric: return t != DType::Bool;
    case Accepts::Bool:
      return t == DType::Bool;
    case Accepts::Any: return true;
  }
  return false;
}

void check_type(const Node& node, Accepts a, DType t, const std::string& what) {
  if (t == DType::Undefined) return;  // not known yet
  op_check(accepts(a, t), node, what + " of type " + dtype_name(t) + " is not supported by this operator");
}

void check_same_type(const Node& node, DType a, DType b) {
  if (a == DType::Undefined || b == DType::Undefined) return;
  op_check(a == b, node, "inputs must share one element type, got " + dtype_name(a) + " and " + dtype_name(b));
}

// The shape of `v` (known, symbolic or unknown rank) with another element type.
ValueInfo with_dtype(const ValueInfo& v, DType dtype) {
  return v.has_shape ? make_info(dtype, v.shape) : unknown_rank(dtype);
}

// The multidirectional broadcast of the given inputs' shapes; unknown rank if any rank is unknown.
ValueInfo broadcast_info(const InferContext& ctx, const std::vector<size_t>& which, DType dtype) {
  SymbolicShape shape;
  for (size_t i : which) {
    const ValueInfo& v = ctx.input(i);
    if (!v.has_shape) return unknown_rank(dtype);
    shape = broadcast_shapes(ctx.node, shape, v.shape);
  }
  return make_info(dtype, shape);
}

const Tensor& input(const Node& node, const std::vector<Tensor>& in, size_t i) {
  op_check(i < in.size() && !in[i].empty(), node, "input " + std::to_string(i) + " is required but missing");
  return in[i];
}

const Tensor* optional_input(const std::vector<Tensor>& in, size_t i) {
  return i < in.size() && !in[i].empty() ? &in[i] : nullptr;
}

// Where each output element of a numpy-style broadcast reads each operand.
struct Broadcast {
  Shape shape;
  std::vector<std::vector<int64_t>> index;  // index[operand][output flat index]
};

Broadcast broadcast(const Node& node, const std::vector<const Tensor*>& operands) {
  Broadcast b;
  for (const Tensor* t : operands) b.shape = broadcast_shapes(node, b.shape, t->shape());
  for (const Tensor* t : operands) b.index.push_back(broadcast_index_map(t->shape(), b.shape));
  return b;
}

// Copies one element between tensors of the same type (int64 stays exact).
void copy_element(const Tensor& src, int64_t si, Tensor& dst, int64_t di) {
  if (is_float(src.dtype()))
    dst.set(di, src.get(si));
  else
    dst.set_int(di, src.get_int(si));
}

// Two's complement int64 arithmetic without C++'s signed-overflow UB.
int64_t wrap_add(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
int64_t wrap_sub(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b)); }
int64_t wrap_mul(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b)); }
int64_t wrap_neg(int64_t a) { return wrap_sub(0, a); }

// C's float-to-integer cast (truncation toward zero), made total: NaN gives 0 and values beyond
// int64 clamp to its limits, where C leaves both undefined.
int64_t float_to_int64(double x) {
  if (std::isnan(x)) return 0;
  if (x >= 9223372036854775808.0) return std::numeric_limits<int64_t>::max();
  if (x < -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(x);
}

// ---------------------------------------------------------------------------------------------
// Unary operators: one driver; each op gives a per-element function on doubles (built from the
// node's attributes) and, where ONNX allows integer inputs, one on int64.

using RealFn = std::function<double(double)>;
using RealFnMaker = std::function<RealFn(const Node&)>;
using IntFn = int64_t (*)(int64_t);

RealFnMaker fixed(double (*f)(double)) {
  return [f](const Node&) { return RealFn(f); };
}

void add_unary(OpRegistry& r, const std::string& op, Accepts types, RealFnMaker real, IntFn integer = nullptr) {
  r.add({"", op,
         [=](const InferContext& ctx) {
           const ValueInfo& x = ctx.input(0);
           check_type(ctx.node, types, x.dtype, "input");
           return std::vector<ValueInfo>{with_dtype(x, x.dtype)};
         },
         [=](const Node& node, const std::vector<Tensor>& in) {
           const Tensor& x = input(node, in, 0);
           check_type(node, types, x.dtype(), "input");
           Tensor y(x.dtype(), x.shape());
           if (is_float(x.dtype())) {
             RealFn f = real(node);
             for (int64_t i = 0; i < x.size(); ++i) y.set(i, f(x.get(i)));
           } else {
             for (int64_t i = 0; i < x.size(); ++i) y.set_int(i, integer(x.get_int(i)));
           }
           return std::vector<Tensor>{y};
         }});
}

double gelu_exact(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh(double x) {
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}

void register_unary(OpRegistry& r) {
  // `x < 0 ? 0 : x` keeps NaN as NaN, as numpy's maximum does.
  add_unary(r, "Relu", Accepts::FloatOrSigned, fixed([](double x) { return x < 0 ? 0.0 : x; }),
            [](int64_t v) { return v < 0 ? int64_t(0) : v; });
  add_unary(r, "LeakyRelu", Accepts::Float, [](const Node& n) {
    double alpha = n.attr_float("alpha", 0.01);
    return RealFn([alpha](double x) { return x >= 0 ? x : alpha * x; });
  });
  add_unary(r, "Sigmoid", Accepts::Float, fixed([](double x) { return 1.0 / (1.0 + std::exp(-x)); }));
  add_unary(r, "Tanh", Accepts::Float, fixed([](double x) { return std::tanh(x); }));
  add_unary(r, "HardSigmoid", Accepts::Float, [](const Node& n) {
    double alpha = n.attr_float("alpha", 0.2), beta = n.attr_float("beta", 0.5);
    return RealFn([alpha, beta](double x) { return std::max(0.0, std::min(1.0, alpha * x + beta)); });
  });
  add_unary(r, "HardSwish", Accepts::Float,
            fixed([](double x) { return x * std::max(0.0, std::min(1.0, x / 6.0 + 0.5)); }));
  add_unary(r, "Gelu", Accepts::Float, [](const Node& n) {
    std::string approximate = n.attr_string("approximate", "none");
    op_check(approximate == "none" || approximate == "tanh", n,
             "approximate must be \"none\" or \"tanh\", got \"" + approximate + "\"");
    return RealFn(approximate == "tanh" ? gelu_tanh : gelu_exact);
  });
  add_unary(r, "Erf", Accepts::Float, fixed([](double x) { return std::erf(x); }));
  add_unary(r, "Sqrt", Accepts::Float, fixed([](double x) { return std::sqrt(x); }));
  add_unary(r, "Exp", Accepts::Float, fixed([](double x) { return std::exp(x); }));
  add_unary(r, "Log", Accepts::Float, fixed([](double x) { return std::log(x); }));
  add_unary(r, "Reciprocal", Accepts::Float, fixed([](double x) { return 1.0 / x; }));
  add_unary(r, "Neg", Accepts::FloatOrSigned, fixed([](double x) { return -x; }), wrap_neg);
  // Abs of an unsigned integer is the identity; of INT_MIN it wraps to itself, as in C and numpy.
  add_unary(r, "Abs", Accepts::Numeric, fixed([](double x) { return std::fabs(x); }),
            [](int64_t v) { return v < 0 ? wrap_neg(v) : v; });
}

// ---------------------------------------------------------------------------------------------
// Binary arithmetic with broadcasting: Add, Sub, Mul, Div, Min, Max share one driver.

struct Arith {
  double (*real)(double, double);
  int64_t (*integer)(const Node&, int64_t, int64_t);
};

Tensor apply_arith(const Node& node, const Arith& op, const Tensor& a, const Tensor& b) {
  check_type(node, Accepts::Numeric, a.dtype(), "input");
  check_same_type(node, a.dtype(), b.dtype());
  Broadcast bc = broadcast(node, {&a, &b});
  Tensor y(a.dtype(), bc.shape);
  for (int64_t k = 0; k < y.size(); ++k) {
    int64_t i = bc.index[0][k], j = bc.index[1][k];
    if (is_float(a.dtype()))
      y.set(k, op.real(a.get(i), b.get(j)));
    else
      y.set_int(k, op.integer(node, a.get_int(i), b.get_int(j)));
  }
  return y;
}

// Integer division truncates toward zero, as C does; INT64_MIN / -1 wraps.
int64_t int_div(const Node& node, int64_t a, int64_t b) {
  op_check(b != 0, node, "integer division by zero");
  return b == -1 ? wrap_neg(a) : a / b;
}

// NaN wins in Min and Max, as in numpy's minimum/maximum (ONNX's reference).
double nan_min(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b); }
double nan_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }

void add_binary(OpRegistry& r, const std::string& op, Arith arith) {
  r.add({"", op,
         [](const InferContext& ctx) {
           check_type(ctx.node, Accepts::Numeric, ctx.input(0).dtype, "input");
           check_same_type(ctx.node, ctx.input(0).dtype, ctx.input(1).dtype);
           return std::vector<ValueInfo>{broadcast_info(ctx, {0, 1}, ctx.input(0).dtype)};
         },
         [arith](const Node& node, const std::vector<Tensor>& in) {
           return std::vector<Tensor>{apply_arith(node, arith, input(node, in, 0), input(node, in, 1))};
         }});
}

// Min and Max take one or more inputs, folded pairwise.
void add_variadic(OpRegistry& r, const std::string& op, Arith arith) {
  r.add({"", op,
         [](const InferContext& ctx) {
           op_check(ctx.count() >= 1, ctx.node, "needs at least one input");
           std::vector<size_t> all;
           for (size_t i = 0; i < ctx.count(); ++i) {
             check_type(ctx.node, Accepts::Numeric, ctx.input(i).dtype, "input");
             check_same_type(ctx.node, ctx.input(0).dtype, ctx.input(i).dtype);
             all.push_back(i);
           }
           return std::vector<ValueInfo>{broadcast_info(ctx, all, ctx.input(0).dtype)};
         },
         [arith](const Node& node, const std::vector<Tensor>& in) {
           Tensor acc = input(node, in, 0);
           check_type(node, Accepts::Numeric, acc.dtype(), "input");
           for (size_t i = 1; i < in.size(); ++i) acc = apply_arith(node, arith, acc, input(node, in, i));
           return std::vector<Tensor>{acc};
         }});
}

// Pow's result has the base's type; the exponent may have another numeric type (opset 12+).
// An integer base is raised exactly for integer exponents >= 0, otherwise through double and
// truncated, as numpy's power followed by astype.
int64_t int_pow(int64_t base, int64_t exponent) {
  int64_t result = 1;  // by squaring; wrapping products are associative, so this equals the plain loop
  for (; exponent > 0; exponent >>= 1) {
    if (exponent & 1) result = wrap_mul(result, base);
    base = wrap_mul(base, base);
  }
  return result;
}

std::vector<Tensor> pow_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& a = input(node, in, 0);
  const Tensor& b = input(node, in, 1);
  check_type(node, Accepts::Numeric, a.dtype(), "base");
  check_type(node, Accepts::Numeric, b.dtype(), "exponent");
  Broadcast bc = broadcast(node, {&a, &b});
  Tensor y(a.dtype(), bc.shape);
  for (int64_t k = 0; k < y.size(); ++k) {
    int64_t i = bc.index[0][k], j = bc.index[1][k];
    if (is_float(a.dtype())) {
      y.set(k, std::pow(a.get(i), b.get(j)));
    } else if (!is_float(b.dtype()) && b.get_int(j) >= 0) {
      y.set_int(k, int_pow(a.get_int(i), b.get_int(j)));
    } else {
      y.set_int(k, float_to_int64(std::pow(static_cast<double>(a.get_int(i)), b.get(j))));
    }
  }
  return {y};
}

std::vector<ValueInfo> pow_infer(const InferContext& ctx) {
  check_type(ctx.node, Accepts::Numeric, ctx.input(0).dtype, "base");
  check_type(ctx.node, Accepts::Numeric, ctx.input(1).dtype, "exponent");
  return {broadcast_info(ctx, {0, 1}, ctx.input(0).dtype)};
}

// Equal compares in the inputs' own type (int64 exactly); NaN equals nothing.
// Comparisons (Equal, Less, LessOrEqual, Greater, GreaterOrEqual) take two numbers of one type;
// And, Or and Xor two bools. All give a bool, with numpy broadcasting. Integers compare as integers.
struct Predicate {
  bool (*real)(double, double);
  bool (*integer)(int64_t, int64_t);
};

void add_predicate(OpRegistry& r, const std::string& op, Predicate p, Accepts types) {
  r.add({"", op,
         [types](const InferContext& ctx) {
           check_same_type(ctx.node, ctx.input(0).dtype, ctx.input(1).dtype);
           check_type(ctx.node, types, ctx.input(0).dtype, "input");
           return std::vector<ValueInfo>{broadcast_info(ctx, {0, 1}, DType::Bool)};
         },
         [p, types](const Node& node, const std::vector<Tensor>& in) {
           const Tensor& a = input(node, in, 0);
           const Tensor& b = input(node, in, 1);
           check_same_type(node, a.dtype(), b.dtype());
           check_type(node, types, a.dtype(), "input");
           Broadcast bc = broadcast(node, {&a, &b});
           Tensor y(DType::Bool, bc.shape);
           for (int64_t k = 0; k < y.size(); ++k) {
             int64_t i = bc.index[0][k], j = bc.index[1][k];
             y.set_int(k, is_float(a.dtype()) ? p.real(a.get(i), b.get(j)) : p.integer(a.get_int(i), b.get_int(j)));
           }
           return std::vector<Tensor>{y};
         }});
}

template <class Op>
Predicate predicate() {
  return {[](double a, double b) { return Op()(a, b); }, [](int64_t a, int64_t b) { return Op()(a, b); }};
}

void register_binary(OpRegistry& r) {
  add_binary(r, "Add", {[](double a, double b) { return a + b; }, [](const Node&, int64_t a, int64_t b) { return wrap_add(a, b); }});
  add_binary(r, "Sub", {[](double a, double b) { return a - b; }, [](const Node&, int64_t a, int64_t b) { return wrap_sub(a, b); }});
  add_binary(r, "Mul", {[](double a, double b) { return a * b; }, [](const Node&, int64_t a, int64_t b) { return wrap_mul(a, b); }});
  add_binary(r, "Div", {[](double a, double b) { return a / b; }, int_div});
  add_variadic(r, "Min", {nan_min, [](const Node&, int64_t a, int64_t b) { return std::min(a, b); }});
  add_variadic(r, "Max", {nan_max, [](const Node&, int64_t a, int64_t b) { return std::max(a, b); }});
  r.add({"", "Pow", pow_infer, pow_compute});
  add_predicate(r, "Equal", predicate<std::equal_to<>>(), Accepts::Any);
  add_predicate(r, "Less", predicate<std::less<>>(), Accepts::Numeric);
  add_predicate(r, "LessOrEqual", predicate<std::less_equal<>>(), Accepts::Numeric);
  add_predicate(r, "Greater", predicate<std::greater<>>(), Accepts::Numeric);
  add_predicate(r, "GreaterOrEqual", predicate<std::greater_equal<>>(), Accepts::Numeric);
  add_predicate(r, "And", predicate<std::logical_and<>>(), Accepts::Bool);
  add_predicate(r, "Or", predicate<std::logical_or<>>(), Accepts::Bool);
  add_predicate(r, "Xor",
                {[](double a, double b) { return (a != 0) != (b != 0); },
                 [](int64_t a, int64_t b) { return (a != 0) != (b != 0); }},
                Accepts::Bool);
  r.add({"", "Not",
         [](const InferContext& ctx) {
           check_type(ctx.node, Accepts::Bool, ctx.input(0).dtype, "input");
           return std::vector<ValueInfo>{broadcast_info(ctx, {0}, DType::Bool)};
         },
         [](const Node& node, const std::vector<Tensor>& in) {
           const Tensor& x = input(node, in, 0);
           op_check(x.dtype() == DType::Bool, node, "input must be bool, got " + dtype_name(x.dtype()));
           Tensor y(DType::Bool, x.shape());
           for (int64_t k = 0; k < y.size(); ++k) y.set_int(k, x.get_int(k) == 0);
           return std::vector<Tensor>{y};
         }});
}

// ---------------------------------------------------------------------------------------------
// Where, Clip, Identity

std::vector<ValueInfo> where_infer(const InferContext& ctx) {
  DType cond = ctx.input(0).dtype;
  op_check(cond == DType::Undefined || cond == DType::Bool, ctx.node, "condition must be bool, got " + dtype_name(cond));
  check_same_type(ctx.node, ctx.input(1).dtype, ctx.input(2).dtype);
  return {broadcast_info(ctx, {0, 1, 2}, ctx.input(1).dtype)};
}

std::vector<Tensor> where_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& cond = input(node, in, 0);
  const Tensor& x = input(node, in, 1);
  const Tensor& y = input(node, in, 2);
  op_check(cond.dtype() == DType::Bool, node, "condition must be bool, got " + dtype_name(cond.dtype()));
  check_same_type(node, x.dtype(), y.dtype());
  Broadcast bc = broadcast(node, {&cond, &x, &y});
  Tensor out(x.dtype(), bc.shape);
  for (int64_t k = 0; k < out.size(); ++k) {
    if (cond.get_int(bc.index[0][k]))
      copy_element(x, bc.index[1][k], out, k);
    else
      copy_element(y, bc.index[2][k], out, k);
  }
  return {out};
}

// Expand (opset 8): x broadcast with a shape given as an int64 input, in both directions as numpy does
// (a dim of 1 in the shape keeps x's dim).
std::vector<ValueInfo> expand_infer(const InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  const Tensor* shape = ctx.constant(1);
  if (!shape || !x.has_shape) return {unknown_rank(x.dtype)};
  return {make_info(x.dtype, broadcast_shapes(ctx.node, x.shape, to_symbolic(expand_dims(ctx.node, *shape))))};
}

std::vector<Tensor> expand_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input(node, in, 0);
  const Shape out_shape = broadcast_shapes(node, x.shape(), expand_dims(node, input(node, in, 1)));
  Tensor out(x.dtype(), out_shape);
  const std::vector<int64_t> from = broadcast_index_map(x.shape(), out_shape);
  for (int64_t k = 0; k < out.size(); ++k) copy_element(x, from[size_t(k)], out, k);
  return {out};
}

// Clip's bounds: float attributes 'min'/'max' before opset 11, optional scalar inputs 1 and 2 from
// opset 11 on (any numeric type from 12). min(max(x, lo), hi) gives `hi` everywhere when lo > hi, as
// the spec asks, and keeps NaN.
std::vector<Tensor> clip_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input(node, in, 0);
  check_type(node, Accepts::Numeric, x.dtype(), "input");
  const Tensor* lo_t = node.opset >= 11 ? optional_input(in, 1) : nullptr;
  const Tensor* hi_t = node.opset >= 11 ? optional_input(in, 2) : nullptr;
  for (const Tensor* bound : {lo_t, hi_t}) {
    if (!bound) continue;
    op_check(bound->size() == 1, node, "min and max must be scalars, got shape " + shape_str(bound->shape()));
    check_same_type(node, x.dtype(), bound->dtype());
  }
  Tensor y(x.dtype(), x.shape());
  if (is_float(x.dtype())) {
    bool from_attrs = node.opset < 11;
    double lo = from_attrs ? node.attr_float("min", -kInf) : lo_t ? lo_t->get(0) : -kInf;
    double hi = from_attrs ? node.attr_float("max", kInf) : hi_t ? hi_t->get(0) : kInf;
    for (int64_t i = 0; i < x.size(); ++i) y.set(i, std::min(std::max(x.get(i), lo), hi));
  } else {
    int64_t lo = lo_t ? lo_t->get_int(0) : std::numeric_limits<int64_t>::min();
    int64_t hi = hi_t ? hi_t->get_int(0) : std::numeric_limits<int64_t>::max();
    for (int64_t i = 0; i < x.size(); ++i) y.set_int(i, std::min(std::max(x.get_int(i), lo), hi));
  }
  return {y};
}

std::vector<ValueInfo> clip_infer(const InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  check_type(ctx.node, Accepts::Numeric, x.dtype, "input");
  if (ctx.node.opset >= 11)
    for (size_t i = 1; i < 3; ++i)
      if (ctx.has(i)) check_same_type(ctx.node, x.dtype, ctx.input(i).dtype);
  return {with_dtype(x, x.dtype)};
}

// ---------------------------------------------------------------------------------------------
// Cast and CastLike
//
// Rules, for every pair of tetra's types:
// - to float32/float16: the exact value rounded once (half via the half helpers; int64 to float32
//   with one correct rounding).
// - to bool: nonzero is true (NaN is nonzero).
// - float to an integer type: truncation toward zero (C's cast) when in range; NaN gives 0 and
//   values beyond int64 clamp to its limits (float_to_int64). The int64 is then wrapped to the
//   target's width, so out-of-range floats wrap like integers do (numpy's behaviour on x86 for
//   int8/uint8/int32: 300.0 -> int8 44, -1.0 -> uint8 255).
// - integer to integer: two's complement wrap to the target's width (ONNX: "truncate").
// - to int4/uint4 before opset 25: the ONNX reference and conformance data (opset 21) saturate to
//   [-8, 7] / [0, 15] and round floats half to even: onnx/subbyte.py float32_to_4bit_unpacked is
//   `np.rint(np.clip(x, lo, hi))`, and docs/docsgen/source/technical/int4.md says "Cast to a 4 bit
//   type is done by rounding to the nearest-integer (with ties to even)". NaN gives 0.
// - to int4/uint4 from opset 25: the conformance data is generated with ml_dtypes' astype
//   (onnx/backend/test/case/node/cast.py: `np_fp32.astype(int4)` over -9..15), which converts like
//   C and keeps the low 4 bits: 8 -> -8 (int4), -1 -> 15 (uint4). The same rules as any integer.

bool int4_saturates(const Node& node) { return node.opset < 25; }

void cast_element(const Tensor& in, int64_t i, Tensor& out, bool int4_saturate) {
  DType from = in.dtype(), to = out.dtype();
  if (to == DType::Bool) {
    out.set_int(i, is_float(from) ? in.get(i) != 0 : in.get_int(i) != 0);
  } else if (to == DType::Float32 && !is_float(from)) {
    out.mutable_data<float>()[i] = static_cast<float>(in.get_int(i));  // one rounding, even for int64
  } else if (is_float(to)) {
    out.set(i, in.get(i));  // exact double in, rounded once
  } else if (is_int4(to) && int4_saturate) {
    // Saturate, then round half to even (a no-op for integer sources).
    double v = is_float(from) ? in.get(i) : static_cast<double>(in.get_int(i));
    double clamped = std::clamp(v, dtype_min(to), dtype_max(to));
    out.set_int(i, std::isnan(v) ? 0 : static_cast<int64_t>(round_half_even(clamped)));
  } else {
    out.set_int(i, is_float(from) ? float_to_int64(in.get(i)) : in.get_int(i));
  }
}

DType cast_target(const Node& node) {
  op_check(node.has_attr("to"), node, "attribute 'to' is required");
  int64_t code = node.attr_int("to", 0);
  DType to = dtype_from_onnx(static_cast<int32_t>(code));
  op_check(dtype_supported(to), node,
           "cannot cast to " + (to == DType::Undefined ? "type code " + std::to_string(code) : dtype_name(to)),
           ErrorKind::Unsupported);
  return to;
}

Tensor cast_tensor(const Node& node, const Tensor& x, DType to) {
  Tensor y(to, x.shape());
  bool saturate = int4_saturates(node);
  for (int64_t i = 0; i < x.size(); ++i) cast_element(x, i, y, saturate);
  return y;
}

void register_cast(OpRegistry& r) {
  r.add({"", "Cast",
         [](const InferContext& ctx) { return std::vector<ValueInfo>{with_dtype(ctx.input(0), cast_target(ctx.node))}; },
         [](const Node& node, const std::vector<Tensor>& in) {
           return std::vector<Tensor>{cast_tensor(node, input(node, in, 0), cast_target(node))};
         }});
  // CastLike: the target type is input 1's; its values do not matter.
  r.add({"", "CastLike",
         [](const InferContext& ctx) {
           DType to = ctx.input(1).dtype;
           op_check(to == DType::Undefined || dtype_supported(to), ctx.node, "cannot cast to " + dtype_name(to),
                    ErrorKind::Unsupported);
           return std::vector<ValueInfo>{with_dtype(ctx.input(0), to)};
         },
         [](const Node& node, const std::vector<Tensor>& in) {
           return std::vector<Tensor>{cast_tensor(node, input(node, in, 0), input(node, in, 1).dtype())};
         }});
}

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  register_unary(r);
  register_binary(r);
  register_cast(r);
  r.add({"", "Where", where_infer, where_compute});
  r.add({"", "Expand", expand_infer, expand_compute});
  r.add({"", "Clip", clip_infer, clip_compute});
  r.add({"", "Identity",
         [](const InferContext& ctx) { return std::vector<ValueInfo>{with_dtype(ctx.input(0), ctx.input(0).dtype)}; },
         [](const Node& node, const std::vector<Tensor>& in) { return std::vector<Tensor>{input(node, in, 0)}; },
         true});
}

}  // namespace tetra
