// Parsing helpers shared by the CLI subcommands.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "importer/tensor.h"
#include "tuner/database.h"

namespace tetra::cli {

// "NAME=1,3,320,320" -> {NAME, shape}; fails clearly on bad syntax.
std::pair<std::string, Shape> parse_shape_binding(const std::string& text);
// "NAME=PATH" -> {NAME, PATH}.
std::pair<std::string, std::string> parse_file_binding(const std::string& text);

// The tuning database for `model`: `db_dir` when given, else a tuning_db/ folder beside the model
// when it holds records; nullopt when there is none. Records are those of `target` (default: this
// machine's). Notes about skipped records go to stderr.
std::optional<tuner::TuningDatabase> open_tuning_database(const std::string& db_dir, const std::string& model,
                                                          const std::string& target = "");

}  // namespace tetra::cli
