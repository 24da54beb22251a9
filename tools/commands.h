// The tetra CLI's subcommands; each file adds one subcommand and its callback to the app.
// Callbacks throw tetra::Error for user-facing failures; main() prints them and exits with 2.
#pragma once
#include <CLI/CLI.hpp>

namespace tetra::cli {

void add_inspect_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_tune_command(CLI::App& app);
void add_db_command(CLI::App& app);
void add_compile_command(CLI::App& app);

// Set by a subcommand whose work completed but whose result is a failure (e.g. outputs outside
// tolerance): main() returns it.
extern int exit_status;

}  // namespace tetra::cli
