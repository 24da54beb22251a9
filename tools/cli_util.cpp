#include "tools/cli_util.h"

#include <filesystem>
#include <iostream>
#include <sstream>

#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/model.h"

namespace tetra::cli {

CLI::Option* add_threads_option(CLI::App* cmd, int& threads) {
  return cmd->add_option("--threads", threads, "threads for compiled kernels (default: one per core)")
      ->check(CLI::Range(1, kMaxThreads));
}

void apply_int8_activations(Graph& graph, bool on) {
  if (!on) return;
  int marked = mark_int8_activations(graph);
  std::cerr << "int8 activations: " << marked << " int4 MatMul node" << (marked == 1 ? "" : "s")
            << " quantize A to int8 per k-block\n";
}

Graph load_model_with_fixed_shapes(const std::string& model, const std::vector<std::string>& shape_bindings) {
  std::map<std::string, Shape> shapes;
  for (const std::string& s : shape_bindings) shapes.insert(parse_shape_binding(s));
  Graph graph = load_model(model, shapes);
  for (const ValueInfo& v : graph.inputs)
    check(shapes.count(v.name) || (v.has_shape && fully_known(v.shape)), ErrorKind::Invalid,
          "input " + v.name + " has a dynamic shape: bind it with --shape " + v.name + "=...");
  return graph;
}

std::pair<std::string, std::string> parse_file_binding(const std::string& text) {
  size_t eq = text.find('=');
  check(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), ErrorKind::Invalid,
        "expected NAME=VALUE, got '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::pair<std::string, Shape> parse_shape_binding(const std::string& text) {
  auto [name, dims] = parse_file_binding(text);
  Shape shape;
  std::stringstream ss(dims);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t d = -1;
    try {
      d = std::stoll(item, &used);
    } catch (const std::exception&) {
    }
    check(d >= 0 && used == item.size(), ErrorKind::Invalid, "bad dimension '" + item + "' in --shape " + text);
    shape.push_back(d);
  }
  return {name, shape};
}

std::optional<tuner::TuningDatabase> open_tuning_database(const std::string& db_dir, const std::string& model,
                                                          const std::string& target) {
  namespace fs = std::filesystem;
  std::string dir = db_dir;
  // A mistyped --db is an error, not an empty database.
  check(dir.empty() || fs::is_directory(dir), ErrorKind::Io, "--db: no tuning database folder '" + dir + "'");
  if (dir.empty()) {
    fs::path beside = fs::path(model).parent_path() / "tuning_db";
    if (!tuner::TuningDatabase::exists(beside.string())) return std::nullopt;
    dir = beside.string();
  }
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir, target.empty() ? dsl::host_target().name : target, dsl::toolchain_id());
  if (!db.note().empty()) std::cerr << "tetra: " << db.note() << "\n";
  return db;
}

}  // namespace tetra::cli
