#include "dsl/gpu/private_arrays.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "dsl/gpu/device_kernel.h"

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

namespace {

// `e` as base + constant (the constant 0 when there is none).
std::pair<Expr, int64_t> split_constant(const Expr& e) {
  Expr s = simplify(e);
  if (const int64_t* c = as_const_int(s)) return {Expr(), *c};
  if (const Add* add = s.as<Add>())
    if (const int64_t* c = as_const_int(add->b)) return {add->a, *c};
  if (const Sub* sub = s.as<Sub>())
    if (const int64_t* c = as_const_int(sub->b)) return {sub->a, -*c};
  return {s, 0};
}

// An integer index as a sum of coefficient x variable, plus a constant.
struct Linear {
  std::map<std::string, int64_t> terms;
  int64_t constant = 0;
};

// `e` as a Linear, where it is one: sums, differences and constant multiples of variables, and a
// remainder by a constant m that is the identity once the terms that are multiples of m are dropped:
// ((no * 32 + tx) * 2 + 1) % 64 is tx * 2 + 1 when tx < 32 (`thread_extent`: each thread id's extent).
// Halide writes a thread's column of a block-wide array so when the column is a guarded tail.
std::optional<Linear> linear_of(const Expr& e, const std::map<std::string, int64_t>& thread_extent) {
  if (const int64_t* c = as_const_int(e)) return Linear{{}, *c};
  if (const Variable* v = e.as<Variable>()) return Linear{{{v->name, 1}}, 0};
  auto scaled = [](Linear l, int64_t by) {
    for (auto& [name, coefficient] : l.terms) coefficient *= by;
    l.constant *= by;
    return l;
  };
  auto sum = [](Linear a, const Linear& b) {
    for (const auto& [name, coefficient] : b.terms) a.terms[name] += coefficient;
    a.constant += b.constant;
    return a;
  };
  if (const Add* op = e.as<Add>()) {
    auto a = linear_of(op->a, thread_extent), b = linear_of(op->b, thread_extent);
    if (a && b) return sum(*a, *b);
  } else if (const Sub* op = e.as<Sub>()) {
    auto a = linear_of(op->a, thread_extent), b = linear_of(op->b, thread_extent);
    if (a && b) return sum(*a, scaled(*b, -1));
  } else if (const Mul* op = e.as<Mul>()) {
    if (const int64_t* c = as_const_int(op->b))
      if (auto a = linear_of(op->a, thread_extent)) return scaled(*a, *c);
    if (const int64_t* c = as_const_int(op->a))
      if (auto b = linear_of(op->b, thread_extent)) return scaled(*b, *c);
  } else if (const Mod* op = e.as<Mod>()) {
    const int64_t* m = as_const_int(op->b);
    auto a = linear_of(op->a, thread_extent);
    if (!m || *m <= 0 || !a) return std::nullopt;
    Linear kept;
    kept.constant = a->constant % *m;
    int64_t low = kept.constant, high = kept.constant;
    for (const auto& [name, coefficient] : a->terms) {
      if (coefficient % *m == 0) continue;
      auto extent = thread_extent.find(name);
      if (extent == thread_extent.end()) return std::nullopt;
      kept.terms[name] = coefficient;
      (coefficient > 0 ? high : low) += coefficient * (extent->second - 1);
    }
    if (low >= 0 && high < *m) return kept;
  }
  return std::nullopt;
}

// A Linear's terms as one expression, in the order of their names (so equal sums are equal graphs).
Expr sum_of_terms(const Linear& l) {
  Expr sum;
  for (const auto& [name, coefficient] : l.terms) {
    if (coefficient == 0) continue;
    Expr term = Variable::make(Int(32), name) * Expr(int32_t(coefficient));
    sum = sum.defined() ? sum + term : term;
  }
  return sum;
}

// The accesses of one array inside its allocation, and the names bound inside it.
class Accesses : public IRVisitor {
 public:
  explicit Accesses(std::string name) : name_(std::move(name)) {}
  // Each access (by its node) with its index, the lets around it substituted.
  std::vector<std::pair<const IRNode*, Expr>> indices;
  bool vector_access = false;
  std::set<std::string> bound_inside;
  std::map<std::string, int64_t> thread_extent;  // of the GPU thread loops inside

 private:
  using IRVisitor::visit;
  void record(const IRNode* node, bool scalar, Expr index) {
    if (!scalar) {
      vector_access = true;
      return;
    }
    for (auto let = lets_.rbegin(); let != lets_.rend(); ++let) index = substitute(let->first, let->second, index);
    indices.emplace_back(node, index);
  }
  void visit(const Load* op) override {
    if (op->name == name_) record(op, op->type.is_scalar(), op->index);
    IRVisitor::visit(op);
  }
  void visit(const Store* op) override {
    if (op->name == name_) record(op, op->value.type().is_scalar(), op->index);
    IRVisitor::visit(op);
  }
  void visit(const For* op) override {
    bool block = false;  // a GPU block or thread id is fixed for the thread's lifetime
    if (gpu_loop_axis(op->name, &block) < 0) bound_inside.insert(op->name);
    const int64_t* extent = as_const_int(op->extent);
    if (gpu_loop_axis(op->name, &block) >= 0 && !block && extent && is_const_zero(op->min))
      thread_extent[op->name] = *extent;
    IRVisitor::visit(op);
  }
  void visit(const LetStmt* op) override {
    bound_inside.insert(op->name);
    op->value.accept(this);
    lets_.emplace_back(op->name, op->value);
    op->body.accept(this);
    lets_.pop_back();
  }
  void visit(const Let* op) override {
    bound_inside.insert(op->name);
    op->value.accept(this);
    lets_.emplace_back(op->name, op->value);
    op->body.accept(this);
    lets_.pop_back();
  }
  std::string name_;
  std::vector<std::pair<std::string, Expr>> lets_;
};

// Whether `e` reads a name bound inside the allocation (a loop variable, say): then the base would
// not be fixed for the array's lifetime.
bool reads_any(const Expr& e, const std::set<std::string>& names) {
  struct Reads : IRVisitor {
    const std::set<std::string>* names;
    bool found = false;
    using IRVisitor::visit;
    void visit(const Variable* v) override { found = found || names->count(v->name); }
  } reads;
  reads.names = &names;
  e.accept(&reads);
  return reads.found;
}

// Gives each access of the array its new constant index.
class SetIndices : public IRMutator {
 public:
  SetIndices(std::string name, std::map<const IRNode*, int32_t> index) : name_(std::move(name)), index_(index) {}

 private:
  using IRMutator::visit;
  Expr visit(const Load* op) override {
    if (op->name != name_) return IRMutator::visit(op);
    return Load::make(op->type, op->name, index_.at(op), op->image, op->param, op->predicate, op->alignment);
  }
  Stmt visit(const Store* op) override {
    if (op->name != name_) return IRMutator::visit(op);
    return Store::make(op->name, mutate(op->value), index_.at(op), op->param, op->predicate, op->alignment);
  }
  std::string name_;
  std::map<const IRNode*, int32_t> index_;
};

class LocalizePrivateArrays : public IRMutator {
  using IRMutator::visit;
  Stmt visit(const Allocate* op) override {
    Stmt body = mutate(op->body);
    Stmt same = Allocate::make(op->name, op->type, op->memory_type, op->extents, op->condition, body, op->new_expr,
                               op->free_function);
    if (op->memory_type != MemoryType::Register || op->new_expr.defined()) return same;
    Accesses accesses(op->name);
    body.accept(&accesses);
    if (accesses.vector_access || accesses.indices.empty()) return same;
    // Every index as a linear form where all are one (see linear_of), else as simplified.
    std::vector<std::optional<Linear>> linear;
    for (const auto& [node, index] : accesses.indices) linear.push_back(linear_of(index, accesses.thread_extent));
    const bool all_linear = std::all_of(linear.begin(), linear.end(), [](const auto& l) { return l.has_value(); });
    Expr base;
    std::map<const IRNode*, int64_t> constant;
    for (size_t i = 0; i < accesses.indices.size(); ++i) {
      auto [b, c] = all_linear ? std::make_pair(sum_of_terms(*linear[i]), linear[i]->constant)
                               : split_constant(accesses.indices[i].second);
      if (i == 0) {
        base = b;
      } else if (base.defined() != b.defined() || (b.defined() && !graph_equal(base, b))) {
        return same;
      }
      constant[accesses.indices[i].first] = c;
    }
    if (base.defined() && reads_any(base, accesses.bound_inside)) return same;
    // Each distinct constant gets the next slot: a relabelling, so the array is as small as the
    // values it holds.
    std::map<int64_t, int32_t> slot;
    for (const auto& [node, c] : constant) slot.emplace(c, 0);
    int32_t next = 0;
    for (auto& [c, s] : slot) s = next++;
    std::map<const IRNode*, int32_t> index;
    for (const auto& [node, c] : constant) index[node] = slot.at(c);
    Stmt shifted = SetIndices(op->name, index).mutate(body);
    return Allocate::make(op->name, op->type, op->memory_type, {Expr(next)}, op->condition, shifted, op->new_expr,
                          op->free_function);
  }
};

}  // namespace

Stmt localize_private_arrays(const Stmt& kernel) { return LocalizePrivateArrays().mutate(kernel); }

}  // namespace tetra::dsl::gpu
