#include "dsl/gpu/vector_loads.h"

#include <map>
#include <vector>

#include "dsl/core/launch_plan.h"

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

namespace {

// Lanes of 32 bits a load may combine, widest first: 16 bytes, else 8.
constexpr int kWidths[] = {4, 2};
static_assert(kDeviceBufferAlignment % 16 == 0, "a buffer's start must allow 16-byte loads");

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
class NotAnIndex : public IRGraphVisitor {
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
  NotAnIndex b;
  e.accept(&b);
  return b.found || !e.type().is_int() ? ModulusRemainder() : modulus_remainder(e, scope);
}

// One stretch's integer lets (what an index is made of), each with the earlier ones expanded in it.
// Other lets stay names: expanding a chain of float lets that reuse each other could grow without bound.
struct StretchLets {
  std::map<std::string, Expr> values;
  void bind(const std::string& name, const Expr& value) {
    if (value.type().is_int() && value.type().is_scalar()) values[name] = expand(value);
  }
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
    lets.bind(op->name, op->value);
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

// A load's address as a symbolic part and a constant offset: Halide's simplifier puts an index's
// constant last, so loads at x, x + 1, x + 2, ... share the part x.
struct Address {
  std::string buffer;
  Type type;
  Expr part;
  int64_t offset = 0;

  static Address of(const Load* load, const Expr& index) {
    Address a{load->name, load->type, index, 0};
    if (const Add* add = index.as<Add>())
      if (const int64_t* c = as_const_int(add->b)) a.part = add->a, a.offset = *c;
    return a;
  }
  // Orders addresses by everything but the offset.
  bool same_row_before(const Address& o) const {
    if (buffer != o.buffer) return buffer < o.buffer;
    if (type != o.type) return type.code() != o.type.code() ? type.code() < o.type.code() : type.bits() < o.type.bits();
    return IRDeepCompare()(part, o.part);
  }
};
struct SameRow {
  bool operator()(const Address& a, const Address& b) const { return a.same_row_before(b); }
};

// `lanes` loads of one buffer at part + first, part + first + 1, ..., read as one.
struct VectorLoad {
  std::string name;  // of the let that holds it
  int64_t first;
  int lanes;
};
using Groups = std::map<Address, std::vector<VectorLoad>, SameRow>;

// The group and lane that read `a`, if any.
const VectorLoad* group_of(const Groups& groups, const Address& a, int* lane) {
  auto it = groups.find(a);
  if (it == groups.end()) return nullptr;
  for (const VectorLoad& g : it->second)
    if (a.offset >= g.first && a.offset < g.first + g.lanes) return *lane = int(a.offset - g.first), &g;
  return nullptr;
}

// Replaces the grouped loads of one stretch with lanes of their vector loads.
class UseLanes : public IRMutator {
 public:
  explicit UseLanes(const Groups& groups) : groups_(groups) {}

 private:
  using IRMutator::visit;
  Stmt visit(const LetStmt* op) override {
    Expr value = mutate(op->value);
    lets_.bind(op->name, op->value);
    return LetStmt::make(op->name, value, mutate(op->body));
  }
  Expr visit(const Load* op) override {
    if (op->type.lanes() == 1 && is_const_one(op->predicate)) {
      int lane = 0;
      if (const VectorLoad* g = group_of(groups_, Address::of(op, lets_.expand(op->index)), &lane))
        return Shuffle::make_extract_element(Variable::make(op->type.with_lanes(g->lanes), g->name), lane);
    }
    return IRMutator::visit(op);
  }
  const Groups& groups_;
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

  bool aligned(const Expr& index, int lanes) const {
    ModulusRemainder m = known_modulus(index, alignment_);
    return m.modulus % lanes == 0 && m.remainder % lanes == 0;
  }

  // One straight-line stretch: its groups found, their loads hoisted to its top.
  Stmt combine(const Stmt& s) {
    CollectLoads found(buffers_);
    s.accept(&found);
    // Each row of addresses (a buffer, a symbolic part) with the offsets the stretch reads, and one load
    // of it.
    std::map<Address, std::map<int64_t, const Load*>, SameRow> rows;
    for (const CollectLoads::Found& f : found.loads) {
      Address a = Address::of(f.load, f.index);
      rows[a].emplace(a.offset, f.load);
    }
    Groups groups;
    struct Hoisted {
      Expr base;         // the group's first index
      const Load* load;  // one of the loads it replaces
      VectorLoad group;
    };
    std::vector<Hoisted> hoisted;
    for (const auto& [row, offsets] : rows) {
      Unhoistable depends(found.inner);
      row.part.accept(&depends);
      if (depends.found) continue;
      std::set<int64_t> used;
      for (int width : kWidths)
        for (const auto& [first, load] : offsets) {
          // Every lane is read by the stretch (so all are in bounds), and none is in another group.
          bool all = true;
          for (int64_t lane = 0; lane < width && all; ++lane)
            all = offsets.count(first + lane) && !used.count(first + lane);
          if (!all || !aligned(simplify(row.part + int(first)), width)) continue;
          for (int64_t lane = 0; lane < width; ++lane) used.insert(first + lane);
          VectorLoad g{load->name + ".x" + std::to_string(width) + "." + std::to_string(counter_++), first, width};
          groups[row].push_back(g);
          hoisted.push_back({simplify(row.part + int(first)), load, g});
        }
    }
    if (groups.empty()) return s;
    Stmt body = UseLanes(groups).mutate(s);
    for (const Hoisted& h : hoisted) {
      const int lanes = h.group.lanes;
      Expr vector = Load::make(h.load->type.with_lanes(lanes), h.load->name, Ramp::make(h.base, 1, lanes),
                               h.load->image, h.load->param, const_true(lanes), ModulusRemainder(lanes, 0));
      body = LetStmt::make(h.group.name, vector, body);
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
