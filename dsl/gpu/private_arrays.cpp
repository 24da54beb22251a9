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

// ---- lower_lane_sums ----

// Whether the allocation `alloc` is the storage of the Func `func` (Halide names it func.N).
bool stores_func(const std::string& alloc, const std::string& func) {
  if (alloc.size() <= func.size() + 1 || alloc.compare(0, func.size() + 1, func + ".") != 0) return false;
  return std::all_of(alloc.begin() + long(func.size()) + 1, alloc.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The writes of an array (a thread's one slot per column it sums), and what surrounds them: the x thread
// loop (the lanes), the outermost condition on thread ids (to hoist the writes out of; the same for all),
// the names bound inside it, and whether a serial loop of thread-dependent bounds encloses a write (then
// lanes would exchange different numbers of times).
class FindLaneWrites : public IRVisitor {
 public:
  explicit FindLaneWrites(std::string name) : name_(std::move(name)) {}
  std::vector<const Store*> writes;
  std::string lane_var;
  int64_t lanes = 0;
  const IfThenElse* outer_if = nullptr;
  bool same_condition = true;  // every write inside outer_if, or every one outside any such condition
  std::set<std::string> bound_in_if;
  bool uneven_loop = false;

 private:
  using IRVisitor::visit;
  struct Around {
    const IRNode* node;
    std::string name;  // a loop's or let's
  };
  bool thread_dependent(const Expr& e) const { return reads_any(e, thread_dependent_); }
  void visit(const Store* op) override {
    IRVisitor::visit(op);
    if (op->name != name_) return;
    const IfThenElse* outer = nullptr;
    for (const Around& a : around_) {
      if (const For* f = dynamic_cast<const For*>(a.node)) {
        bool block = false;
        const int axis = gpu_loop_axis(f->name, &block);
        if (axis == 0 && !block) {
          lane_var = f->name;
          const int64_t* extent = as_const_int(f->extent);
          lanes = extent && is_const_zero(f->min) ? *extent : 0;
        }
        if (axis < 0 && (thread_dependent(f->min) || thread_dependent(f->extent))) uneven_loop = true;
      }
      const IfThenElse* i = dynamic_cast<const IfThenElse*>(a.node);
      if (!outer && i && thread_dependent(i->condition)) outer = i;
      if (outer && !a.name.empty()) bound_in_if.insert(a.name);
    }
    if (!writes.empty() && outer != outer_if) same_condition = false;
    outer_if = outer;
    writes.push_back(op);
  }
  void visit(const For* op) override {
    bool block = false;
    if (gpu_loop_axis(op->name, &block) >= 0 && !block) thread_dependent_.insert(op->name);
    around_.push_back({op, op->name});
    IRVisitor::visit(op);
    around_.pop_back();
  }
  void visit(const IfThenElse* op) override {
    around_.push_back({op, ""});
    IRVisitor::visit(op);
    around_.pop_back();
  }
  void visit(const LetStmt* op) override {
    if (thread_dependent(op->value)) thread_dependent_.insert(op->name);
    around_.push_back({op, op->name});
    IRVisitor::visit(op);
    around_.pop_back();
  }
  std::string name_;
  std::vector<Around> around_;
  std::set<std::string> thread_dependent_;
};

// A read of a lane-summed array: the write whose column it reads, and whether it reads lane 0's slot.
struct LaneRead {
  size_t write;
  bool lane0;
};

// The rewrite of one lane-summed array: each write, hoisted out of `outer_if` where there is one, becomes
// the lanes' sum; a read of lane 0's slot reads the thread's own slot of that column, and a read of another
// lane's is dropped from the sum it is added to: that part is in the sum now.
class SumAcrossLanes : public IRMutator {
 public:
  SumAcrossLanes(const FindLaneWrites& found, std::vector<Expr> own_index, std::map<const IRNode*, LaneRead> reads)
      : found_(found), own_index_(std::move(own_index)), reads_(std::move(reads)), dropped_(make_zero(type())) {}

  // Whether `s` still holds a dropped read: one that was not a term of a sum (a max, say), which the
  // exchanges' sum does not stand for.
  bool holds_dropped(const Stmt& s) const {
    struct Find : IRVisitor {
      const IRNode* dropped;
      bool found = false;
      using IRVisitor::visit;
      void visit(const FloatImm* op) override { found = found || op == dropped; }
    } find;
    find.dropped = dropped_.get();
    s.accept(&find);
    return find.found;
  }

 private:
  using IRMutator::visit;
  Type type() const { return found_.writes.front()->value.type(); }
  const std::string& array() const { return found_.writes.front()->name; }
  std::string temp(size_t i) const { return array() + ".lane" + std::to_string(i); }
  Expr sum(const Expr& value) const {
    return Call::make(type(), "tetra_lane_sum", {value, Expr(int32_t(found_.lanes))}, Call::Extern);
  }
  Stmt store(const std::string& name, const Expr& value, const Expr& index) const {
    return Store::make(name, value, index, Parameter(), const_true(), ModulusRemainder());
  }
  Expr load_temp(size_t i) const {
    return Load::make(type(), temp(i), 0, Buffer<>(), Parameter(), const_true(), ModulusRemainder());
  }
  Stmt visit(const Store* op) override {
    auto it = std::find(found_.writes.begin(), found_.writes.end(), op);
    if (it == found_.writes.end()) return IRMutator::visit(op);
    const size_t i = size_t(it - found_.writes.begin());
    Expr value = mutate(op->value);
    return found_.outer_if ? store(temp(i), value, 0) : store(op->name, sum(value), own_index_[i]);
  }
  Stmt visit(const IfThenElse* op) override {
    if (op != found_.outer_if) return IRMutator::visit(op);
    // temp_i = 0; if (...) { ... temp_i = value_i; } temp_i = sum(temp_i); array[own_i] = temp_i
    std::vector<Stmt> steps;
    for (size_t i = 0; i < found_.writes.size(); ++i) steps.push_back(store(temp(i), make_zero(type()), 0));
    steps.push_back(IRMutator::visit(op));
    for (size_t i = 0; i < found_.writes.size(); ++i) steps.push_back(store(temp(i), sum(load_temp(i)), 0));
    for (size_t i = 0; i < found_.writes.size(); ++i) steps.push_back(store(array(), load_temp(i), own_index_[i]));
    Stmt body = Block::make(steps);
    for (size_t i = 0; i < found_.writes.size(); ++i)
      body = Allocate::make(temp(i), type(), MemoryType::Register, {1}, const_true(), body);
    return body;
  }
  Expr visit(const Load* op) override {
    auto it = reads_.find(op);
    if (it == reads_.end()) return IRMutator::visit(op);
    if (!it->second.lane0) return dropped_;
    return Load::make(op->type, op->name, own_index_[it->second.write], op->image, op->param, op->predicate,
                      op->alignment);
  }
  // `x + dropped` is x. (Not Halide's simplifier: it would also rewrite the own-slot reads' indices by the
  // conditions around them, and they would no longer be the writes'.)
  Expr visit(const Add* op) override {
    Expr a = mutate(op->a), b = mutate(op->b);
    if (b.same_as(dropped_)) return a;
    if (a.same_as(dropped_)) return b;
    return a.same_as(op->a) && b.same_as(op->b) ? Expr(op) : Add::make(a, b);
  }

  const FindLaneWrites& found_;
  std::vector<Expr> own_index_;  // each write's, the lets around it substituted
  std::map<const IRNode*, LaneRead> reads_;
  Expr dropped_;
};

class LowerLaneSums : public IRMutator {
 public:
  explicit LowerLaneSums(const std::set<std::string>& funcs) : funcs_(funcs) {}
  std::string error;

 private:
  using IRMutator::visit;
  Stmt visit(const Allocate* op) override {
    Stmt s = IRMutator::visit(op);
    const bool marked =
        std::any_of(funcs_.begin(), funcs_.end(), [&](const auto& f) { return stores_func(op->name, f); });
    if (!marked || !error.empty()) return s;
    const Allocate* a = s.as<Allocate>();
    auto fail = [&](const std::string& why) {
      error = "the lane sum " + op->name + ": " + why;
      return s;
    };
    if (a->memory_type != MemoryType::Register) return fail("not in registers");
    FindLaneWrites found(a->name);
    a->body.accept(&found);
    if (found.writes.empty()) return fail("never written");
    const Type t = found.writes.front()->value.type();
    if (!t.is_float() || t.bits() != 32 || !t.is_scalar()) return fail("not of float32 values");
    if (found.lanes < 1 || (found.lanes & (found.lanes - 1)) != 0)
      return fail("the x threads around its writes are not a power of two from 0");
    if (found.uneven_loop) return fail("written in a loop whose bounds depend on the thread");
    if (!found.same_condition) return fail("written under different conditions on the thread");
    Accesses accesses(a->name);
    a->body.accept(&accesses);
    std::map<const IRNode*, Expr> index(accesses.indices.begin(), accesses.indices.end());
    // Each write's slot, the slot of lane 0 of its column, and the distance between lanes' slots.
    std::vector<Expr> own, at_lane0;
    int64_t stride = 0;
    for (const Store* w : found.writes) {
      if (!index.count(w)) return fail("a write of a vector");
      for (const Expr& other : own)
        if (can_prove(other == index.at(w))) return fail("a slot written twice (a lane's value is written once)");
      own.push_back(index.at(w));
      if (found.outer_if && reads_any(own.back(), found.bound_in_if))
        return fail("its index reads a name bound inside the condition around it");
      at_lane0.push_back(simplify(substitute(found.lane_var, 0, own.back())));
      const int64_t* s1 = as_const_int(simplify(substitute(found.lane_var, 1, own.back()) - at_lane0.back()));
      if (!s1 || *s1 == 0 || (stride && *s1 != stride)) return fail("its index is not linear in the lane");
      stride = *s1;
    }
    // Each read is of lane c of one write's column (c * stride from its lane-0 slot), each lane of each
    // column read once.
    std::map<const IRNode*, LaneRead> reads;
    std::set<std::pair<size_t, int64_t>> lanes_read;
    for (const auto& [node, i] : accesses.indices) {
      if (std::find(found.writes.begin(), found.writes.end(), node) != found.writes.end()) continue;
      std::optional<LaneRead> read;
      for (size_t w = 0; w < found.writes.size() && !read; ++w) {
        const int64_t* offset = as_const_int(simplify(i - at_lane0[w]));
        if (!offset || *offset % stride != 0 || *offset / stride < 0 || *offset / stride >= found.lanes) continue;
        if (!lanes_read.insert({w, *offset / stride}).second)
          return fail("a lane of a column read twice (unroll the lanes' loop)");
        read = LaneRead{w, *offset == 0};
      }
      if (!read) return fail("a read other than of the lanes of the reading thread's columns (unroll the lanes' loop)");
      reads[node] = *read;
    }
    if (int64_t(lanes_read.size()) != found.lanes * int64_t(found.writes.size()))
      return fail("its reads do not cover every lane of every column");
    SumAcrossLanes across(found, own, reads);
    Stmt summed = across.mutate(s);
    if (across.holds_dropped(summed)) return fail("a read of another lane's slot that is not a term of a sum");
    return summed;
  }
  const std::set<std::string>& funcs_;
};

}  // namespace

Stmt localize_private_arrays(const Stmt& kernel) { return LocalizePrivateArrays().mutate(kernel); }

Result<Stmt> lower_lane_sums(const Stmt& kernel, const std::set<std::string>& funcs) {
  if (funcs.empty()) return kernel;
  LowerLaneSums lower(funcs);
  Stmt s = lower.mutate(kernel);
  if (!lower.error.empty()) return Failure{FailureKind::Unsupported, "lane sums", lower.error};
  return s;
}

}  // namespace tetra::dsl::gpu
