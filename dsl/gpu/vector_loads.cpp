#include "dsl/gpu/vector_loads.h"

#include <algorithm>
#include <map>
#include <vector>

#include "dsl/core/launch_plan.h"

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

namespace {

constexpr int kLanes = 4;  // of 32 bits: 16 bytes
static_assert(kDeviceBufferAlignment % (kLanes * 4) == 0, "a buffer's start must allow 16-byte loads");

// Whether a statement runs straight through: no loop, branch, allocation or barrier inside.
class ControlFlow : public IRVisitor {
 public:
  bool found = false;

 private:
  using IRVisitor::visit;
  void visit(const For*) override { found = true; }
  void visit(const IfThenElse*) override { found = true; }
  void visit(const Allocate*) override { found = true; }
  void visit(const Call* op) override {
    found = found || op->is_intrinsic(Call::gpu_thread_barrier);
    IRVisitor::visit(op);
  }
};

// A block's statements in order, nested blocks flattened.
void flatten(const Stmt& s, std::vector<Stmt>& out) {
  if (const Block* b = s.as<Block>()) {
    flatten(b->first, out);
    flatten(b->rest, out);
  } else {
    out.push_back(s);
  }
}

bool straight_line(const Stmt& s) {
  ControlFlow v;
  s.accept(&v);
  return !v.found;
}

// Whether an index depends on a loaded value or on a name bound inside an expression: then it cannot be
// evaluated at the top of the stretch.
class Unhoistable : public IRVisitor {
 public:
  explicit Unhoistable(const std::set<std::string>& inner) : inner_(inner) {}
  bool found = false;

 private:
  using IRVisitor::visit;
  void visit(const Load*) override { found = true; }
  void visit(const Variable* op) override { found = found || inner_.count(op->name); }
  const std::set<std::string>& inner_;
};

// Halide's modulus analysis of a signed integer (an index), which fails on an expression with a bool
// or an unsigned constant inside: such an expression is taken as unknown.
class HasBool : public IRGraphVisitor {
 public:
  bool found = false;

 private:
  using IRGraphVisitor::include;
  void include(const Expr& e) override {
    if (e.type().is_bool() || e.type().is_uint()) found = true;
    if (!found) IRGraphVisitor::include(e);
  }
};

ModulusRemainder known_modulus(const Expr& e, const Scope<ModulusRemainder>& scope) {
  HasBool b;
  e.accept(&b);
  return b.found || !e.type().is_int() ? ModulusRemainder() : modulus_remainder(e, scope);
}

// One stretch's lets, each with the stretch's earlier lets expanded in it.
struct StretchLets {
  std::map<std::string, Expr> values;
  Expr expand(const Expr& e) const { return simplify(substitute(values, e)); }
};

// The candidate loads of a stretch: scalar 32-bit loads of the read-only buffers, not under a select,
// with their index expanded.
class CollectLoads : public IRVisitor {
 public:
  explicit CollectLoads(const std::set<std::string>& buffers) : buffers_(buffers) {}
  struct Found {
    const Load* load;
    Expr index;  // expanded
  };
  std::vector<Found> loads;
  StretchLets lets;
  std::set<std::string> inner;  // names bound by Let expressions

 private:
  using IRVisitor::visit;
  void visit(const LetStmt* op) override {
    op->value.accept(this);
    lets.values[op->name] = lets.expand(op->value);
    op->body.accept(this);
  }
  void visit(const Let* op) override {
    inner.insert(op->name);
    IRVisitor::visit(op);
  }
  void visit(const Select* op) override {
    op->condition.accept(this);
    ++guarded_;
    op->true_value.accept(this);
    op->false_value.accept(this);
    --guarded_;
  }
  void visit(const Call* op) override {
    if (op->is_intrinsic(Call::if_then_else)) ++guarded_;
    IRVisitor::visit(op);
    if (op->is_intrinsic(Call::if_then_else)) --guarded_;
  }
  void visit(const Load* op) override {
    IRVisitor::visit(op);
    if (guarded_ || op->type.lanes() != 1 || op->type.bits() != 32 || !buffers_.count(op->name) ||
        !is_const_one(op->predicate))
      return;
    loads.push_back({op, lets.expand(op->index)});
  }
  const std::set<std::string>& buffers_;
  int guarded_ = 0;
};

// Four loads of one buffer at base, base + 1, base + 2, base + 3, read as one.
struct VectorLoad {
  std::string name;  // of the let that holds it
  const Load* first;
  Expr base;
};

// The lane of `group` that a load at `index` (expanded) of `buffer` reads, or -1.
int lane_of(const VectorLoad& group, const std::string& buffer, Type type, const Expr& index) {
  if (group.first->name != buffer || group.first->type != type) return -1;
  const int64_t* d = as_const_int(simplify(index - group.base));
  return d && *d >= 0 && *d < kLanes ? int(*d) : -1;
}

// Replaces the grouped loads of one stretch with lanes of their vector loads.
class UseLanes : public IRMutator {
 public:
  explicit UseLanes(const std::vector<VectorLoad>& groups) : groups_(groups) {}

 private:
  using IRMutator::visit;
  Stmt visit(const LetStmt* op) override {
    Expr value = mutate(op->value);
    lets_.values[op->name] = lets_.expand(op->value);
    return LetStmt::make(op->name, value, mutate(op->body));
  }
  Expr visit(const Load* op) override {
    if (op->type.lanes() == 1 && is_const_one(op->predicate)) {
      Expr index = lets_.expand(op->index);
      for (const VectorLoad& g : groups_)
        if (int lane = lane_of(g, op->name, op->type, index); lane >= 0)
          return Shuffle::make_extract_element(Variable::make(op->type.with_lanes(kLanes), g.name), lane);
    }
    return IRMutator::visit(op);
  }
  const std::vector<VectorLoad>& groups_;
  StretchLets lets_;
};

class CombineLoads : public IRMutator {
 public:
  explicit CombineLoads(const std::set<std::string>& buffers) : buffers_(buffers) {}

  Stmt mutate(const Stmt& s) override {
    if (!s.defined() || !straight_line(s)) return IRMutator::mutate(s);
    return combine(s);
  }
  using IRMutator::mutate;

 private:
  using IRMutator::visit;
  Stmt visit(const LetStmt* op) override {
    ScopedBinding<ModulusRemainder> bind(alignment_, op->name, known_modulus(op->value, alignment_));
    return IRMutator::visit(op);
  }
  Stmt visit(const For* op) override {
    ScopedBinding<ModulusRemainder> bind(alignment_, op->name, ModulusRemainder());
    return IRMutator::visit(op);
  }
  // A block with a branch or loop in it: each run of straight-line statements is one stretch (a guarded
  // tail nests the next step's branch after this step's statements).
  Stmt visit(const Block* op) override {
    std::vector<Stmt> out, run;
    auto end_run = [&] {
      if (!run.empty()) out.push_back(combine(Block::make(run)));
      run.clear();
    };
    std::vector<Stmt> statements;
    flatten(Stmt(op), statements);
    for (const Stmt& s : statements) {
      if (straight_line(s)) {
        run.push_back(s);
        continue;
      }
      end_run();
      out.push_back(mutate(s));
    }
    end_run();
    return Block::make(out);
  }

  bool aligned(const Expr& index) const {
    ModulusRemainder m = known_modulus(index, alignment_);
    return m.modulus % kLanes == 0 && m.remainder % kLanes == 0;
  }

  // One straight-line stretch: its groups found, their loads hoisted to its top.
  Stmt combine(const Stmt& s) {
    CollectLoads found(buffers_);
    s.accept(&found);
    std::vector<VectorLoad> groups;
    for (const CollectLoads::Found& a : found.loads) {
      Unhoistable depends(found.inner);
      a.index.accept(&depends);
      if (depends.found || !aligned(a.index)) continue;
      bool known = false;
      for (const VectorLoad& g : groups) known = known || lane_of(g, a.load->name, a.load->type, a.index) >= 0;
      if (known) continue;
      VectorLoad candidate{"", a.load, a.index};
      bool lanes[kLanes] = {};
      for (const CollectLoads::Found& b : found.loads)
        if (int lane = lane_of(candidate, b.load->name, b.load->type, b.index); lane >= 0) lanes[lane] = true;
      // Every lane is read by the stretch, so all four are in bounds.
      if (std::all_of(lanes, lanes + kLanes, [](bool x) { return x; })) {
        candidate.name = a.load->name + ".x4." + std::to_string(counter_++);
        groups.push_back(candidate);
      }
    }
    if (groups.empty()) return s;
    Stmt body = UseLanes(groups).mutate(s);
    for (auto g = groups.rbegin(); g != groups.rend(); ++g) {
      const Load* first = g->first;
      Expr vector = Load::make(first->type.with_lanes(kLanes), first->name, Ramp::make(g->base, 1, kLanes),
                               first->image, first->param, const_true(kLanes), ModulusRemainder(kLanes, 0));
      body = LetStmt::make(g->name, vector, body);
    }
    return body;
  }

  const std::set<std::string>& buffers_;
  Scope<ModulusRemainder> alignment_;  // what is known of the lets and loop variables around a stretch
  int counter_ = 0;
};

}  // namespace

Stmt combine_vector_loads(const Stmt& kernel, const std::set<std::string>& read_only_buffers) {
  return CombineLoads(read_only_buffers).mutate(kernel);
}

}  // namespace tetra::dsl::gpu
