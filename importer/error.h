// tetra's one error type: every user-facing failure names the node, tensor or record at fault.
#pragma once
#include <stdexcept>
#include <string>
#include <type_traits>

namespace tetra {

enum class ErrorKind {
  Malformed,    // the input file or tensor is broken (truncated protobuf, wrong byte count, ...)
  Unsupported,  // valid ONNX that tetra does not handle
  Invalid,      // a semantic error in the model or the user's arguments (shape mismatch, missing input)
  Io,           // a file could not be read or written
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

// Checks an internal or user-facing condition and throws an Error naming the context.
inline void check(bool condition, ErrorKind kind, const std::string& message) {
  if (!condition) fail(kind, message);
}
// The same with the message built only on failure, for checks that run on every inference: building
// a message of labels and shapes for each node of each run costs microseconds a node.
template <typename MakeMessage, typename = std::enable_if_t<std::is_invocable_r_v<std::string, MakeMessage>>>
inline void check(bool condition, ErrorKind kind, MakeMessage&& make_message) {
  if (!condition) fail(kind, make_message());
}

}  // namespace tetra
