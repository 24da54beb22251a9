// dsl/gpu/private_arrays.h on hand-built kernel bodies: a thread's register array indexed by thread id
// plus constants shrinks to one slot per constant; one whose offset changes during its lifetime, or whose
// accesses disagree on the offset, is left as it was.
#include <catch2/catch.hpp>

#include "dsl/gpu/private_arrays.h"

using namespace Halide;
using namespace Halide::Internal;
using tetra::dsl::gpu::localize_private_arrays;

namespace {

const Expr tx = Variable::make(Int(32), ".__thread_id_x");

// for (thread x in 0..64) { body }, inside `float acc[1024]` in registers.
Stmt in_thread_loop(const Stmt& body) {
  Stmt loop = For::make(".__thread_id_x", 0, 64, ForType::GPUThread, DeviceAPI::None, body);
  return Allocate::make("acc", Float(32), MemoryType::Register, {1024}, const_true(), loop);
}

Stmt store(const Expr& index, float value) {
  return Store::make("acc", value, index, Parameter(), const_true(), ModulusRemainder());
}
Expr load(const Expr& index) {
  return Load::make(Float(32), "acc", index, Buffer<>(), Parameter(), const_true(), ModulusRemainder());
}

// The allocation and the indices of its stores and loads, in order.
struct Seen : IRVisitor {
  std::vector<Expr> extents, indices;
  using IRVisitor::visit;
  void visit(const Allocate* op) override {
    extents = op->extents;
    IRVisitor::visit(op);
  }
  void visit(const Store* op) override {
    indices.push_back(op->index);
    IRVisitor::visit(op);
  }
  void visit(const Load* op) override {
    indices.push_back(op->index);
    IRVisitor::visit(op);
  }
};

Seen seen(const Stmt& s) {
  Seen v;
  s.accept(&v);
  return v;
}

}  // namespace

TEST_CASE("private arrays: thread-id offsets are dropped, constants kept", "[gpu]") {
  // acc[tx*4 + 1] = 1; acc[tx*4 + 3] = acc[tx*4 + 1] + 2, with the offset through a let, as lowering
  // leaves it.
  Expr base = Variable::make(Int(32), "base");
  Stmt body = Block::make(store(base + 1, 1.0f), store(tx * 4 + 3, 0.0f));
  body = Block::make(body, Evaluate::make(load(base + 1)));
  body = LetStmt::make("base", tx * 4, body);
  Seen after = seen(localize_private_arrays(in_thread_loop(body)));
  REQUIRE(after.extents.size() == 1);
  CHECK(is_const(after.extents[0], 2));  // offsets 1 and 3 take slots 0 and 1
  REQUIRE(after.indices.size() == 3);
  CHECK(is_const(after.indices[0], 0));
  CHECK(is_const(after.indices[1], 1));
  CHECK(is_const(after.indices[2], 0));
}

TEST_CASE("private arrays: an offset that changes in the array's lifetime, or disagrees, is kept", "[gpu]") {
  // The offset reads a loop inside the allocation: acc[tx + i] names a different slot each iteration.
  Stmt loop = For::make("i", 0, 4, ForType::Serial, DeviceAPI::None, store(tx + Variable::make(Int(32), "i"), 1.0f));
  Seen moving = seen(localize_private_arrays(in_thread_loop(loop)));
  CHECK(is_const(moving.extents[0], 1024));
  // Two offsets: tx*2 and tx*4.
  Seen two = seen(localize_private_arrays(in_thread_loop(Block::make(store(tx * 2, 1.0f), store(tx * 4 + 1, 2.0f)))));
  CHECK(is_const(two.extents[0], 1024));
  CHECK_FALSE(is_const(two.indices[0]));
}

TEST_CASE("private arrays: a remainder the thread extents make the identity is read through, else kept", "[gpu]") {
  // A guarded tail's column as lowering leaves it: acc[((no*64 + tx)*2 + 1) % 128] is acc[tx*2 + 1], since
  // no*128 drops out and tx*2 + 1 < 128 for the 64 threads.
  const Expr no = Variable::make(Int(32), "no");
  Stmt body = Block::make(store(tx * 2, 1.0f), store(((no * 64 + tx) * 2 + 1) % 128, 2.0f));
  body = Block::make(body, Evaluate::make(load(tx * 2 + 1)));
  Seen after = seen(localize_private_arrays(in_thread_loop(body)));
  REQUIRE(after.extents.size() == 1);
  CHECK(is_const(after.extents[0], 2));
  REQUIRE(after.indices.size() == 3);
  CHECK(is_const(after.indices[0], 0));
  CHECK(is_const(after.indices[1], 1));
  CHECK(is_const(after.indices[2], 1));
  // % 64: tx*2 + 1 reaches 127, so the remainder wraps and the index is not tx*2 + 1.
  Stmt wraps = Block::make(store(tx * 2, 1.0f), store(((no * 32 + tx) * 2 + 1) % 64, 2.0f));
  Seen kept = seen(localize_private_arrays(in_thread_loop(wraps)));
  CHECK(is_const(kept.extents[0], 1024));
  CHECK_FALSE(is_const(kept.indices[1]));
}
