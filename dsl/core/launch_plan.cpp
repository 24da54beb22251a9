#include "dsl/core/launch_plan.h"

#include <algorithm>

#include "dsl/core/json_reader.h"

namespace tetra::dsl {

namespace {

const std::vector<std::string> kTypes = {"f32", "f16", "i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64"};
// The operators from IndexExpr::Op::Add on, in its order.
const std::vector<std::string> kOps = {"+",  "-",  "*",  "/",  "%",  "min", "max",   "<",
                                       "<=", "==", "!=", "&&", "||", "!",   "select"};

size_t arity(IndexExpr::Op op) { return op == IndexExpr::Op::Not ? 1 : op == IndexExpr::Op::Select ? 3 : 2; }

nlohmann::json expr_to_json(const IndexExpr& e) {
  switch (e.op) {
    case IndexExpr::Op::Const:
      return e.value;
    case IndexExpr::Op::Input:
      return e.input;
    default:
      break;
  }
  nlohmann::json j = nlohmann::json::array({kOps[size_t(int(e.op) - int(IndexExpr::Op::Add))]});
  for (const IndexExpr& o : e.operands) j.push_back(expr_to_json(o));
  return j;
}

Result<IndexExpr> expr_from_json(const nlohmann::json& j, int depth = 0) {
  auto bad = [&](const std::string& why) {
    return Failure{FailureKind::BadJson, "launch plan", why + ": " + j.dump()};
  };
  if (depth > 64) return bad("an expression nested too deep");
  if (j.is_number_integer()) return IndexExpr::constant(j.get<int64_t>());
  if (j.is_string()) return IndexExpr::named(j.get<std::string>());
  if (!j.is_array() || j.empty() || !j[0].is_string())
    return bad("an expression is a number, an input or [op, operands...]");
  auto op = std::find(kOps.begin(), kOps.end(), j[0].get<std::string>());
  if (op == kOps.end()) return bad("unknown operator");
  IndexExpr e{IndexExpr::Op(int(IndexExpr::Op::Add) + int(op - kOps.begin())), 0, "", {}};
  if (j.size() != arity(e.op) + 1) return bad("\"" + *op + "\" takes " + std::to_string(arity(e.op)) + " operands");
  for (size_t i = 1; i < j.size(); ++i) {
    Result<IndexExpr> o = expr_from_json(j[i], depth + 1);
    if (!o) return o.failure();
    e.operands.push_back(o.value());
  }
  return e;
}

// Halide's integer division: Euclidean, the remainder is never negative.
int64_t euclidean_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return r < 0 ? r + (b < 0 ? -b : b) : r;
}

}  // namespace

int KernelParam::bytes() const {
  if (type == "i8" || type == "u8") return 1;
  if (type == "f16" || type == "i16" || type == "u16") return 2;
  if (type == "i64" || type == "u64") return 8;
  return 4;
}

nlohmann::json LaunchPlan::to_json() const {
  nlohmann::json ps = nlohmann::json::array();
  for (const KernelParam& p : params) {
    nlohmann::json j = {{"name", p.name}, {"kind", p.is_buffer ? "buffer" : "scalar"}, {"type", p.type}};
    if (p.is_buffer)
      j["read"] = p.read, j["write"] = p.write;
    else
      j["value"] = expr_to_json(p.value);
    ps.push_back(j);
  }
  nlohmann::json blocks_j = nlohmann::json::array(), threads_j = nlohmann::json::array();
  for (int i = 0; i < 3; ++i) {
    blocks_j.push_back(expr_to_json(blocks[size_t(i)]));
    threads_j.push_back(expr_to_json(threads[size_t(i)]));
  }
  nlohmann::json j = {
      {"kernel", kernel}, {"params", ps}, {"blocks", blocks_j}, {"threads", threads_j}, {"shared_bytes", shared_bytes}};
  if (!node.empty()) j["node"] = node;
  if (!touched.empty()) {
    nlohmann::json& t = j["touched"] = nlohmann::json::array();
    for (const TouchedRange& r : touched)
      t.push_back({{"buffer", r.buffer}, {"dim", r.dim}, {"min", expr_to_json(r.min)}, {"max", expr_to_json(r.max)}});
  }
  return j;
}

std::string LaunchPlan::label() const { return node.empty() ? kernel : kernel + " (" + node + ")"; }

Result<LaunchPlan> LaunchPlan::from_json(const nlohmann::json& j) {
  JsonReader r(j, "launch plan");
  LaunchPlan plan;
  plan.kernel = r.text("kernel");
  if (j.contains("node")) plan.node = r.text("node");
  const nlohmann::json* params = r.field("params");
  const nlohmann::json* blocks = r.field("blocks");
  const nlohmann::json* threads = r.field("threads");
  plan.shared_bytes = r.integer("shared_bytes", 0, int64_t(1) << 20);
  if (r.ok() && !params->is_array()) r.fail_with("\"params\" must be an array");
  if (!r.ok()) return r.failure();
  for (const nlohmann::json& pj : *params) {
    JsonReader p(pj, "kernel parameter");
    KernelParam param;
    param.name = p.text("name");
    param.is_buffer = p.choice("kind", {"scalar", "buffer"}) == 1;
    param.type = kTypes[size_t(p.choice("type", kTypes))];
    const nlohmann::json* value = nullptr;
    if (param.is_buffer)
      param.read = p.flag("read"), param.write = p.flag("write");
    else
      value = p.field("value");
    if (!p.ok()) return p.failure();
    if (value) {
      Result<IndexExpr> e = expr_from_json(*value);
      if (!e) return e.failure();
      param.value = e.value();
    }
    plan.params.push_back(param);
  }
  for (auto [source, dest] : {std::pair{blocks, &plan.blocks}, std::pair{threads, &plan.threads}}) {
    if (!source->is_array() || source->size() != 3)
      return Failure{FailureKind::BadJson, "launch plan", "\"blocks\" and \"threads\" hold 3 extents (x, y, z)"};
    for (size_t i = 0; i < 3; ++i) {
      Result<IndexExpr> e = expr_from_json((*source)[i]);
      if (!e) return e.failure();
      (*dest)[i] = e.value();
    }
  }
  if (j.contains("touched")) {
    if (!j["touched"].is_array()) return Failure{FailureKind::BadJson, "launch plan", "\"touched\" must be an array"};
    for (const nlohmann::json& tj : j["touched"]) {
      JsonReader t(tj, "touched range of " + plan.kernel);
      TouchedRange range;
      range.buffer = t.text("buffer");
      range.dim = int(t.integer("dim", 0, 15));
      const nlohmann::json* min = t.field("min");
      const nlohmann::json* max = t.field("max");
      if (!t.ok()) return t.failure();
      Result<IndexExpr> lo = expr_from_json(*min), hi = expr_from_json(*max);
      if (!lo) return lo.failure();
      if (!hi) return hi.failure();
      range.min = lo.value(), range.max = hi.value();
      plan.touched.push_back(range);
    }
  }
  return plan;
}

Result<int64_t> evaluate(const IndexExpr& e, const std::map<std::string, int64_t>& inputs) {
  if (e.op == IndexExpr::Op::Const) return e.value;
  if (e.op == IndexExpr::Op::Input) {
    auto it = inputs.find(e.input);
    if (it == inputs.end())
      return Failure{FailureKind::Run, "launch plan", "the launch has no input \"" + e.input + "\""};
    return it->second;
  }
  std::vector<int64_t> v;
  for (const IndexExpr& o : e.operands) {
    Result<int64_t> r = evaluate(o, inputs);
    if (!r) return r.failure();
    v.push_back(r.value());
  }
  if (v.size() != arity(e.op))
    return Failure{FailureKind::Run, "launch plan", "an operator with the wrong operand count"};
  if (e.op == IndexExpr::Op::Not) return int64_t(v[0] == 0);
  if (e.op == IndexExpr::Op::Select) return v[0] != 0 ? v[1] : v[2];
  int64_t x = v[0], y = v[1];
  switch (e.op) {
    case IndexExpr::Op::Lt:
      return int64_t(x < y);
    case IndexExpr::Op::Le:
      return int64_t(x <= y);
    case IndexExpr::Op::Eq:
      return int64_t(x == y);
    case IndexExpr::Op::Ne:
      return int64_t(x != y);
    case IndexExpr::Op::And:
      return int64_t(x != 0 && y != 0);
    case IndexExpr::Op::Or:
      return int64_t(x != 0 || y != 0);
    case IndexExpr::Op::Add:
      return x + y;
    case IndexExpr::Op::Sub:
      return x - y;
    case IndexExpr::Op::Mul:
      return x * y;
    case IndexExpr::Op::Min:
      return std::min(x, y);
    case IndexExpr::Op::Max:
      return std::max(x, y);
    case IndexExpr::Op::Div:
    case IndexExpr::Op::Mod:
      if (y == 0) return Failure{FailureKind::Run, "launch plan", "a grid extent divides by zero"};
      return e.op == IndexExpr::Op::Div ? (x - euclidean_mod(x, y)) / y : euclidean_mod(x, y);
    default:
      break;
  }
  return Failure{FailureKind::Run, "launch plan", "unknown operator"};
}

bool LaunchGrid::empty() const {
  for (size_t i = 0; i < 3; ++i)
    if (blocks[i] < 1 || threads[i] < 1) return true;
  return false;
}

Status check_touched(const LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) {
  for (const TouchedRange& t : plan.touched) {
    const std::string field = "." + std::to_string(t.dim);
    Result<int64_t> lo = evaluate(t.min, inputs), hi = evaluate(t.max, inputs),
                    min = evaluate(IndexExpr::named(t.buffer + ".min" + field), inputs),
                    extent = evaluate(IndexExpr::named(t.buffer + ".extent" + field), inputs);
    for (const Result<int64_t>* r : {&lo, &hi, &min, &extent})
      if (!*r)
        return Failure{FailureKind::Run, plan.label(), "touched range of " + t.buffer + ": " + r->failure().describe()};
    if (hi.value() < lo.value()) continue;  // touches nothing
    if (lo.value() < min.value() || hi.value() > min.value() + extent.value() - 1)
      return Failure{FailureKind::Run, plan.label(),
                     "touches " + t.buffer + " beyond the buffer: dimension " + std::to_string(t.dim) + " over [" +
                         std::to_string(lo.value()) + ", " + std::to_string(hi.value()) + "], and it holds [" +
                         std::to_string(min.value()) + ", " + std::to_string(min.value() + extent.value() - 1) + "]"};
  }
  return ok_status();
}

Result<LaunchGrid> evaluate_grid(const LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) {
  LaunchGrid grid;
  for (size_t i = 0; i < 3; ++i) {
    Result<int64_t> b = evaluate(plan.blocks[i], inputs), t = evaluate(plan.threads[i], inputs);
    if (!b) return b.failure();
    if (!t) return t.failure();
    grid.blocks[i] = b.value();
    grid.threads[i] = t.value();
  }
  return grid;
}

}  // namespace tetra::dsl
