#include "dsl/gpu/double_buffer.h"

#include <map>
#include <vector>

namespace tetra::dsl::gpu {

using namespace Halide;
using namespace Halide::Internal;

namespace {

bool is_barrier(const Stmt& s) {
  const Evaluate* e = s.as<Evaluate>();
  const Call* call = e ? e->value.as<Call>() : nullptr;
  return call && call->is_intrinsic(Call::gpu_thread_barrier);
}

// The buffers a statement loads, stores and allocates, and whether it has a barrier.
struct Accesses : public IRVisitor {
  std::set<std::string> loads, stores, allocated;
  bool barrier = false;

  using IRVisitor::visit;
  void visit(const Load* op) override {
    loads.insert(op->name);
    IRVisitor::visit(op);
  }
  void visit(const Store* op) override {
    stores.insert(op->name);
    IRVisitor::visit(op);
  }
  void visit(const Allocate* op) override {
    allocated.insert(op->name);
    IRVisitor::visit(op);
  }
  void visit(const Call* op) override {
    barrier = barrier || op->is_intrinsic(Call::gpu_thread_barrier);
    IRVisitor::visit(op);
  }
};

Accesses accesses_of(const Stmt& s) {
  Accesses a;
  if (s.defined()) s.accept(&a);
  return a;
}

// One step of a loop body read in order: a statement, or a let whose scope is the steps after it. (The
// producer and consumer markers are dropped: they print as comments.)
struct Step {
  std::string let;
  Expr value;
  Stmt stmt;
};

void flatten(const Stmt& s, std::vector<Step>* steps) {
  if (const LetStmt* l = s.as<LetStmt>()) {
    steps->push_back({l->name, l->value, Stmt()});
    flatten(l->body, steps);
  } else if (const ProducerConsumer* pc = s.as<ProducerConsumer>()) {
    flatten(pc->body, steps);
  } else if (const Block* b = s.as<Block>()) {
    flatten(b->first, steps);
    flatten(b->rest, steps);
  } else {
    steps->push_back({"", Expr(), s});
  }
}

// `steps` as one statement, without the lets nothing after them uses.
Stmt rebuild(const std::vector<Step>& steps) {
  Stmt s;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if (it->stmt.defined())
      s = s.defined() ? Block::make(it->stmt, s) : it->stmt;
    else if (s.defined() && stmt_uses_var(s, it->let))
      s = LetStmt::make(it->let, it->value, s);
  }
  return s;
}

// Every load and store of `buffer` moved `parity` x `bytes` bytes on. A pooled allocation holds stages of
// several types, and each access indexes it in elements of its own type (Halide's pooling of workgroup
// memory; `bytes` is a multiple of every type's size: the pool is whole elements of its widest).
class Shift : public IRMutator {
 public:
  Shift(std::string buffer, Expr parity, int64_t bytes)
      : buffer_(std::move(buffer)), parity_(std::move(parity)), bytes_(bytes) {}

 private:
  using IRMutator::visit;
  Expr shifted(const Expr& index, const Type& element) const {
    const Expr offset = parity_ * int32_t(bytes_ / element.bytes());
    return index.type().is_vector() ? index + Broadcast::make(offset, index.type().lanes()) : index + offset;
  }
  Expr visit(const Load* op) override {
    Expr e = IRMutator::visit(op);
    op = e.as<Load>();
    if (op->name != buffer_) return e;
    return Load::make(op->type, op->name, shifted(op->index, op->type), op->image, op->param, op->predicate,
                      ModulusRemainder());
  }
  Stmt visit(const Store* op) override {
    Stmt s = IRMutator::visit(op);
    op = s.as<Store>();
    if (op->name != buffer_) return s;
    return Store::make(op->name, op->value, shifted(op->index, op->value.type()), op->param, op->predicate,
                       ModulusRemainder());
  }
  std::string buffer_;
  Expr parity_;
  int64_t bytes_;
};

// Loops of constant extent unrolled: `ok` is false if a loop's extent is not a constant.
class UnrollConstantLoops : public IRMutator {
 public:
  bool ok = true;

 private:
  using IRMutator::visit;
  Stmt visit(const For* op) override {
    Stmt body = mutate(op->body);
    const int64_t* extent = as_const_int(op->extent);
    if (!extent) {
      ok = false;
      return op;
    }
    std::vector<Stmt> copies;
    for (int64_t i = 0; i < *extent; ++i) copies.push_back(substitute(op->name, simplify(op->min + int32_t(i)), body));
    return copies.empty() ? Evaluate::make(0) : Block::make(copies);
  }
};

// A copying stretch of staging (straight-line: lets, conditions and stores to workgroup memory of values
// that read none), split in two: `fetch` puts each stored value in a slot of a register array, one array per
// element type, and `store` stores it from there, with the same conditions. Run twice on one stretch, once
// each way, it numbers the slots alike.
class SplitCopy : public IRMutator {
 public:
  SplitCopy(const std::map<std::string, int64_t>& shared, std::string prefix, bool fetch)
      : shared_(shared), prefix_(std::move(prefix)), fetch_(fetch) {}

  bool ok = true;
  std::map<std::string, std::pair<Type, int32_t>> arrays;  // name: element type, slots

 private:
  using IRMutator::visit;
  Stmt visit(const Store* op) override {
    if (!shared_.count(op->name) || op->value.type().is_vector()) {
      ok = false;
      return op;
    }
    const Type t = op->value.type();
    const std::string array = prefix_ + "." + (t.is_float() ? "f" : t.is_uint() ? "u" : "i") + std::to_string(t.bits());
    auto it = arrays.emplace(array, std::make_pair(t, 0)).first;
    const int32_t slot = it->second.second++;
    if (fetch_) return Store::make(array, op->value, slot, Parameter(), const_true(), ModulusRemainder());
    return Store::make(op->name, Load::make(t, array, slot, Buffer<>(), Parameter(), const_true(), ModulusRemainder()),
                       op->index, op->param, op->predicate, op->alignment);
  }
  Stmt visit(const For* op) override {
    ok = false;
    return op;
  }
  Stmt visit(const Allocate* op) override {
    ok = false;
    return op;
  }
  const std::map<std::string, int64_t>& shared_;
  std::string prefix_;
  bool fetch_;
};

// The loops' rewrite. `shared` holds each workgroup memory allocation's bytes; `doubled` collects those
// a rewritten loop uses in two halves.
class DoubleBuffer : public IRMutator {
 public:
  DoubleBuffer(const std::set<std::string>& loops, const std::map<std::string, int64_t>& shared,
               std::set<std::string>* rewritten)
      : loops_(loops), shared_(shared), rewritten_(rewritten) {}

  std::set<std::string> doubled;
  std::string error;

 private:
  using IRMutator::visit;

  // The loop's name in `loops_`, by the last part of its name, or "".
  std::string requested(const std::string& name) const {
    const size_t dot = name.rfind('.');
    const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
    return loops_.count(last) ? last : "";
  }

  Stmt visit(const For* op) override {
    const std::string loop = requested(op->name);
    if (loop.empty() || op->for_type != ForType::Serial) return IRMutator::visit(op);
    auto fail = [&](const std::string& why) -> Stmt {
      if (error.empty()) error = "the chunk loop " + op->name + " cannot be double-buffered: it " + why;
      return op;
    };
    std::vector<Step> steps;
    flatten(op->body, &steps);
    if (steps.empty() || !steps.back().stmt.defined() || !is_barrier(steps.back().stmt))
      return fail("does not end in a barrier");
    int split = -1;  // the barrier between staging the chunk and reading it
    for (int i = int(steps.size()) - 2; i >= 0 && split < 0; --i)
      if (steps[i].stmt.defined() && is_barrier(steps[i].stmt)) split = i;
    if (split < 0) return fail("has no barrier between staging its chunk and reading it");
    // The staging in stretches between its own barriers, and the arithmetic, each with the lets before it.
    std::vector<Stmt> stretches;
    std::vector<Step> lets, stretch;
    for (int i = 0; i < split; ++i) {
      if (steps[i].stmt.defined() && is_barrier(steps[i].stmt)) {
        stretches.push_back(rebuild(stretch));
        stretch = lets;
        continue;
      }
      if (!steps[i].stmt.defined()) lets.push_back(steps[i]);
      stretch.push_back(steps[i]);
    }
    stretches.push_back(rebuild(stretch));
    std::vector<Step> compute_steps = lets;
    compute_steps.insert(compute_steps.end(), steps.begin() + split + 1, steps.end() - 1);
    Stmt compute = rebuild(compute_steps);
    std::vector<Stmt> defined_stretches;
    for (const Stmt& s : stretches)
      if (s.defined()) defined_stretches.push_back(s);
    if (defined_stretches.empty() || !compute.defined()) return fail("stages nothing, or reads nothing it staged");
    const Stmt stage = Block::make(defined_stretches);

    const Accesses staged = accesses_of(stage), computed = accesses_of(compute);
    if (computed.barrier) return fail("has a barrier after its chunk is staged");
    std::set<std::string> halves;  // the workgroup memory the loop uses
    for (const std::string& b : staged.stores) {
      if (shared_.count(b))
        halves.insert(b);
      else if (!staged.allocated.count(b))
        return fail("stages into " + b + ", which is not workgroup memory");
    }
    for (const std::string& b : computed.stores)
      if (shared_.count(b)) return fail("writes the workgroup memory " + b + " after its chunk is staged");
    for (const std::string& b : staged.loads)
      if (computed.stores.count(b)) return fail("stages its chunk from " + b + ", which its arithmetic writes");
    for (const std::string& b : computed.loads)
      if (shared_.count(b) && !halves.count(b))
        return fail("reads the workgroup memory " + b + ", which it does not stage");

    // Chunk kc's half of each buffer: (kc - min) & 1 times the buffer's size on.
    const Expr kc = Variable::make(Int(32), op->name);
    const Expr parity = simplify((kc - op->min) & 1);
    for (const std::string& b : halves) {
      Shift by_half(b, parity, shared_.at(b));
      for (Stmt& s : stretches)
        if (s.defined()) s = by_half.mutate(s);
      compute = by_half.mutate(compute);
    }
    const Stmt barrier = steps.back().stmt;
    // Chunk `chunk` staged where `condition` holds. The condition is the same for the whole block, and is
    // tested in each stretch, so that every thread meets every barrier unconditionally.
    auto stage_chunk = [&](const Expr& condition, const Expr& chunk) {
      std::vector<Stmt> staged_steps;
      for (size_t i = 0; i < stretches.size(); ++i) {
        if (i > 0) staged_steps.push_back(barrier);
        if (!stretches[i].defined()) continue;
        Stmt s = substitute(op->name, chunk, stretches[i]);
        staged_steps.push_back(is_const_one(condition) ? s : IfThenElse::make(condition, s));
      }
      return Block::make(staged_steps);
    };
    const Expr has_next = simplify(kc + 1 < op->min + op->extent);
    Stmt body = held_in_registers(stretches, staged, op->name, has_next, compute, barrier);
    if (!body.defined()) body = Block::make({stage_chunk(has_next, kc + 1), compute, barrier});
    Stmt chunks = For::make(op->name, op->min, op->extent, op->for_type, op->device_api, body);
    Stmt first = Block::make(stage_chunk(simplify(op->extent > 0), op->min), barrier);
    doubled.insert(halves.begin(), halves.end());
    rewritten_->insert(loop);
    return Block::make(first, chunks);
  }

  // The loop body where the staging only copies (it reads no workgroup memory, and its stretches' loops have
  // constant extents): the next chunk's values fetched into registers before the arithmetic and stored to
  // workgroup memory after it, so that a wave's loads of it are in flight with the arithmetic's; its stretches need no
  // barriers between them, as none reads what another writes. Undefined where the staging does more.
  Stmt held_in_registers(const std::vector<Stmt>& stretches, const Accesses& staged, const std::string& loop,
                         const Expr& has_next, const Stmt& compute, const Stmt& barrier) const {
    for (const std::string& b : staged.loads)
      if (shared_.count(b)) return Stmt();
    std::vector<Stmt> straight;
    for (const Stmt& s : stretches) {
      if (!s.defined()) continue;
      UnrollConstantLoops unroll;
      straight.push_back(unroll.mutate(s));
      if (!unroll.ok) return Stmt();
    }
    const Stmt copy = Block::make(straight);
    SplitCopy fetch(shared_, loop + ".next", true), store(shared_, loop + ".next", false);
    const Expr next_chunk = Variable::make(Int(32), loop) + 1;
    Stmt fetched = substitute(loop, next_chunk, fetch.mutate(copy));
    Stmt stored = substitute(loop, next_chunk, store.mutate(copy));
    if (!fetch.ok || !store.ok) return Stmt();
    Stmt body =
        Block::make({IfThenElse::make(has_next, fetched), compute, IfThenElse::make(has_next, stored), barrier});
    for (const auto& [name, array] : fetch.arrays)
      body = Allocate::make(name, array.first, MemoryType::Register, {array.second}, const_true(), body);
    return body;
  }

  const std::set<std::string>& loops_;
  const std::map<std::string, int64_t>& shared_;
  std::set<std::string>* rewritten_;
};

// Each workgroup memory allocation of constant size, and its bytes.
std::map<std::string, int64_t> shared_bytes(const Stmt& kernel) {
  struct Sizes : public IRVisitor {
    std::map<std::string, int64_t> bytes;
    using IRVisitor::visit;
    void visit(const Allocate* op) override {
      if (op->memory_type == MemoryType::GPUShared && op->constant_allocation_size() > 0)
        bytes[op->name] = op->constant_allocation_size() * op->type.bytes();
      IRVisitor::visit(op);
    }
  } sizes;
  kernel.accept(&sizes);
  return sizes.bytes;
}

// The workgroup memory allocations of `doubled` at twice their size.
class DoubleAllocations : public IRMutator {
 public:
  explicit DoubleAllocations(const std::set<std::string>& doubled) : doubled_(doubled) {}

 private:
  using IRMutator::visit;
  Stmt visit(const Allocate* op) override {
    Stmt s = IRMutator::visit(op);
    if (op->memory_type != MemoryType::GPUShared || !doubled_.count(op->name)) return s;
    op = s.as<Allocate>();
    return Allocate::make(op->name, op->type, op->memory_type, {int32_t(2 * op->constant_allocation_size())},
                          op->condition, op->body, op->new_expr, op->free_function);
  }
  const std::set<std::string>& doubled_;
};

}  // namespace

Result<Stmt> double_buffer_chunks(const Stmt& kernel, const std::set<std::string>& loops,
                                  std::set<std::string>* rewritten) {
  if (loops.empty()) return kernel;
  const std::map<std::string, int64_t> bytes = shared_bytes(kernel);
  DoubleBuffer pass(loops, bytes, rewritten);
  Stmt body = pass.mutate(kernel);
  if (!pass.error.empty()) return Failure{FailureKind::Unsupported, "double_buffer", pass.error};
  return DoubleAllocations(pass.doubled).mutate(body);
}

}  // namespace tetra::dsl::gpu
