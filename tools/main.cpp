// tetra: compile, tune and run int4 weight-quantized ONNX models.
#include <filesystem>
#include <iostream>

#include "importer/error.h"
#include "tools/commands.h"

namespace tetra::cli {
int exit_status = 0;
}

int main(int argc, char** argv) {
  CLI::App app{"tetra: a compiler and autotuner for int4 weight-quantized ONNX models"};
  app.require_subcommand(1);
  tetra::cli::add_inspect_command(app);
  tetra::cli::add_run_command(app);
  tetra::cli::add_quantize_command(app);
  tetra::cli::add_bench_command(app);
  tetra::cli::add_tune_command(app);
  tetra::cli::add_db_command(app);
  tetra::cli::add_compile_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; a bad argument is the user's error like any other: status 2.
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const tetra::Error& e) {
    std::cerr << "tetra: error: " << e.what() << "\n";
    return 2;
  } catch (const std::filesystem::filesystem_error& e) {  // a path the user gave cannot be used; it is named
    std::cerr << "tetra: error: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "tetra: error: out of memory\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tetra: internal error: " << e.what() << "\n";
    return 3;
  }
  return tetra::cli::exit_status;
}
