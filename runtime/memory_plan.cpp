#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "runtime/op_registry.h"
#include "runtime/reference_evaluator.h"

namespace tetra {

Tensor OutputPlaces::make(size_t i, DType dtype, Shape shape) const {
  if (i < places.size() && !places[i].empty() && places[i].dtype() == dtype) {
    const Tensor& place = places[i];
    if (storage_bytes(dtype, checked_element_count(dtype, shape)) == place.byte_size())
      return Tensor::view(place, 0, dtype, std::move(shape));
  }
  return Tensor::for_overwrite(dtype, std::move(shape));
}

ArenaLayout lay_out_buffers(const std::vector<LiveBuffer>& buffers, int64_t alignment) {
  auto align = [&](int64_t v) { return (v + alignment - 1) / alignment * alignment; };
  std::vector<size_t> order(buffers.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return buffers[a].bytes > buffers[b].bytes; });
  ArenaLayout layout;
  layout.offsets.assign(buffers.size(), 0);
  std::vector<size_t> placed;
  for (size_t b : order) {
    const LiveBuffer& buf = buffers[b];
    // The placed buffers live at a common node, by offset; this one goes in the first gap it fits.
    std::vector<size_t> rivals;
    for (size_t p : placed)
      if (buffers[p].first <= buf.last && buf.first <= buffers[p].last) rivals.push_back(p);
    std::sort(rivals.begin(), rivals.end(), [&](size_t a, size_t c) { return layout.offsets[a] < layout.offsets[c]; });
    int64_t offset = 0;
    for (size_t r : rivals) {
      if (offset + buf.bytes <= layout.offsets[r]) break;
      offset = std::max(offset, align(layout.offsets[r] + buffers[r].bytes));
    }
    layout.offsets[b] = offset;
    layout.bytes = std::max(layout.bytes, offset + buf.bytes);
    placed.push_back(b);
  }
  return layout;
}

namespace {

// Values that share one storage, and where that storage goes.
struct Group {
  std::vector<std::string> members;
  bool pinned = false;  // holds a graph input, output or initializer
  int64_t bytes = 0;
  size_t first = SIZE_MAX, last = 0;
  int parent = -1;  // the group of the Concat output this one is placed in
  int64_t offset_in_parent = 0;
  int buffer = -1;  // index among the arena's buffers (top-level groups)
};

class Planner {
 public:
  Planner(const Graph& graph, const RunObservation& seen) : graph_(graph), seen_(seen) {}

  MemoryPlan plan() {
    form_groups();
    place_concat_inputs();
    return lay_out();
  }

 private:
  int find(const std::string& name) {
    auto it = group_of_.find(name);
    if (it == group_of_.end()) {
      group_of_[name] = static_cast<int>(groups_.size());
      groups_.push_back(Group{});
      groups_.back().members.push_back(name);
      return group_of_[name];
    }
    return it->second;
  }
  void join(const std::string& a, const std::string& b) {
    int ga = find(a), gb = find(b);
    if (ga == gb) return;
    for (const std::string& m : groups_[gb].members) {
      group_of_[m] = ga;
      groups_[ga].members.push_back(m);
    }
    groups_[gb].members.clear();
  }

  void form_groups() {
    for (const auto& [name, v] : seen_) {
      find(name);
      if (!v.view_of.empty()) join(v.view_of, name);
    }
    std::set<std::string> pinned;
    for (const ValueInfo& v : graph_.inputs) pinned.insert(v.name);
    for (const ValueInfo& v : graph_.outputs) pinned.insert(v.name);
    for (const auto& [name, t] : graph_.initializers) pinned.insert(name);
    std::map<std::string, size_t> producer, last_reader;
    for (size_t k = 0; k < graph_.nodes.size(); ++k) {
      for (const std::string& in : graph_.nodes[k].inputs)
        if (!in.empty()) last_reader[in] = k;
      for (const std::string& out : graph_.nodes[k].outputs)
        if (!out.empty()) producer[out] = k;
    }
    for (Group& g : groups_) {
      int roots = 0;
      for (const std::string& m : g.members) {
        pin_if(g, pinned.count(m) > 0 || !producer.count(m));
        auto s = seen_.find(m);
        if (s != seen_.end() && s->second.view_of.empty()) {
          g.bytes = s->second.bytes;
          ++roots;
        }
        if (producer.count(m)) {
          size_t first = producer[m];
          g.first = std::min(g.first, first);
          g.last = std::max({g.last, first, last_reader.count(m) ? last_reader[m] : first});
        }
      }
      // Storage of its own exactly once, else the observation does not describe one buffer.
      pin_if(g, roots != 1 || g.bytes == 0);
    }
  }
  static void pin_if(Group& g, bool pin) { g.pinned = g.pinned || pin; }

  bool planned(const std::string& name) const {
    auto it = group_of_.find(name);
    return it != group_of_.end() && !groups_[it->second].pinned;
  }

  // A Concat whose every dim before the axis is 1 is its inputs' bytes one after another: each input
  // whose storage is its own and not yet placed elsewhere goes there.
  void place_concat_inputs() {
    for (const Node& n : graph_.nodes) {
      if (!n.domain.empty() || n.op_type != "Concat" || n.outputs.empty() || !planned(n.outputs[0])) continue;
      const WrittenValue& out = seen_.at(n.outputs[0]);
      if (!out.view_of.empty() || dtype_bits(out.dtype) < 8) continue;
      int64_t rank = static_cast<int64_t>(out.shape.size()), axis = n.attr_int("axis", 0);
      if (axis < 0) axis += rank;
      if (axis < 0 || axis >= rank) continue;
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= out.shape[d];
      if (outer != 1) continue;
      // Every input's bytes known and adding up to the output's, or nothing is placed.
      std::vector<int64_t> bytes;
      for (const std::string& in : n.inputs) bytes.push_back(bytes_of(in));
      int64_t total = 0;
      for (int64_t b : bytes) total = b < 0 || total < 0 ? -1 : total + b;
      if (total != out.bytes) continue;
      int parent = group_of_.at(n.outputs[0]);
      std::set<int> used{parent};
      int64_t offset = 0;
      bool all_placed = true;
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        const std::string& in = n.inputs[i];
        int g = !in.empty() && planned(in) ? group_of_.at(in) : -1;
        if (g >= 0 && groups_[g].parent < 0 && !used.count(g) && !has_ancestor(parent, g) &&
            groups_[g].bytes == bytes[i]) {
          groups_[g].parent = parent;
          groups_[g].offset_in_parent = offset;
          used.insert(g);
        } else {
          all_placed = all_placed && bytes[i] == 0;
        }
        offset += bytes[i];
      }
      if (all_placed) ++concats_in_place_;
    }
  }
  int64_t bytes_of(const std::string& name) const {
    if (name.empty()) return 0;
    auto s = seen_.find(name);
    if (s != seen_.end()) return s->second.bytes;
    auto t = graph_.initializers.find(name);
    return t != graph_.initializers.end() ? t->second.byte_size() : -1;
  }
  bool has_ancestor(int g, int ancestor) const {
    for (; g >= 0; g = groups_[g].parent)
      if (g == ancestor) return true;
    return false;
  }
  int top(int g) const {
    while (groups_[g].parent >= 0) g = groups_[g].parent;
    return g;
  }
  int64_t address_in_top(int g) const {
    int64_t a = 0;
    for (; groups_[g].parent >= 0; g = groups_[g].parent) a += groups_[g].offset_in_parent;
    return a;
  }

  MemoryPlan lay_out() {
    // A top-level group lives from the first write of anything placed in it to the last read.
    std::vector<LiveBuffer> buffers;
    for (size_t g = 0; g < groups_.size(); ++g)
      if (!groups_[g].members.empty() && !groups_[g].pinned && groups_[g].parent < 0) {
        groups_[g].buffer = static_cast<int>(buffers.size());
        buffers.push_back({groups_[g].bytes, groups_[g].first, groups_[g].last});
      }
    MemoryPlan plan;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].members.empty() || groups_[g].pinned) continue;
      LiveBuffer& b = buffers[groups_[top(static_cast<int>(g))].buffer];
      b.first = std::min(b.first, groups_[g].first);
      b.last = std::max(b.last, groups_[g].last);
      plan.value_bytes += groups_[g].bytes;
    }
    if (buffers.empty()) return plan;
    ArenaLayout layout = lay_out_buffers(buffers);
    plan.arena = Tensor::for_overwrite(DType::UInt8, {layout.bytes});
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].members.empty() || groups_[g].pinned) continue;
      int64_t address = layout.offsets[groups_[top(static_cast<int>(g))].buffer] + address_in_top(static_cast<int>(g));
      for (const std::string& m : groups_[g].members) plan.address[m] = address;
    }
    plan.places.resize(graph_.nodes.size());
    for (size_t k = 0; k < graph_.nodes.size(); ++k) {
      const Node& n = graph_.nodes[k];
      plan.places[k].places.resize(n.outputs.size());
      for (size_t i = 0; i < n.outputs.size(); ++i) {
        auto a = plan.address.find(n.outputs[i]);
        const WrittenValue* v = a == plan.address.end() ? nullptr : &seen_.at(n.outputs[i]);
        if (v && v->view_of.empty()) plan.places[k].places[i] = Tensor::view(plan.arena, a->second, v->dtype, v->shape);
      }
    }
    plan.concats_in_place = concats_in_place_;
    return plan;
  }

  const Graph& graph_;
  const RunObservation& seen_;
  std::vector<Group> groups_;
  std::map<std::string, int> group_of_;
  int concats_in_place_ = 0;
};

}  // namespace

MemoryPlan plan_memory(const Graph& graph, const RunObservation& seen) { return Planner(graph, seen).plan(); }

std::optional<RunObservation> predicted_writes(const Graph& graph, const std::map<std::string, ValueInfo>& values,
                                               const TensorMap& inputs) {
  RunObservation seen;
  for (const ValueInfo& in : graph.inputs) {
    const Tensor& t = inputs.at(in.name);
    seen[in.name] = {t.dtype(), t.shape(), t.byte_size(), ""};
  }
  for (const Node& n : graph.nodes) {
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      auto v = values.find(n.outputs[i]);
      if (v == values.end() || !v->second.has_shape || !fully_known(v->second.shape) ||
          !dtype_supported(v->second.dtype))
        return std::nullopt;
      Shape shape = to_shape(v->second.shape);
      bool view = i == 0 && op_for(n).output_views_input && n.has_input(0);
      seen[n.outputs[i]] = {v->second.dtype, shape,
                            storage_bytes(v->second.dtype, checked_element_count(v->second.dtype, shape)),
                            view ? n.input(0) : ""};
    }
  }
  return seen;
}

}  // namespace tetra
