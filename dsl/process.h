// Runs build tools as programs, never through a shell: every argument travels as one argv entry, so
// no character in a path (a quote, `$(...)`, a space) is ever interpreted.
#pragma once
#include <string>
#include <vector>

namespace tetra::dsl {

struct ProgramRun {
  int status = -1;     // the exit status; 128 + the signal when killed; -1 when it could not start
  std::string output;  // stdout and stderr together
  bool ok() const { return status == 0; }
};

// Runs argv[0] (looked up in PATH) with `argv` and waits for it. `stdin_path`: a file to read as its
// standard input ("" for none).
ProgramRun run_program(const std::vector<std::string>& argv, const std::string& stdin_path = "");

// "ccache cc" -> {"ccache", "cc"}: a tool named by an environment variable such as CC, split at spaces.
std::vector<std::string> split_command(const std::string& text);

// The command line for messages, each argument quoted where it needs to be.
std::string describe_command(const std::vector<std::string>& argv);

}  // namespace tetra::dsl
