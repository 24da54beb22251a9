// Parsing helpers shared by the CLI subcommands.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "importer/tensor.h"

namespace tetra::cli {

// "NAME=1,3,320,320" -> {NAME, shape}; fails clearly on bad syntax.
std::pair<std::string, Shape> parse_shape_binding(const std::string& text);
// "NAME=PATH" -> {NAME, PATH}.
std::pair<std::string, std::string> parse_file_binding(const std::string& text);

}  // namespace tetra::cli
