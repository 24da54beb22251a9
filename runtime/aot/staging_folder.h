// Where `tetra compile` builds its output: a folder of its own inside OUT, whose files are renamed into
// OUT when everything succeeded, and which is removed either way. A failure leaves OUT as it was.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>

#include "importer/error.h"

namespace tetra {

class StagingFolder {
 public:
  // Creates OUT (refusing a path that is not a folder) and OUT/.tetra-compile-PID.
  explicit StagingFolder(const std::filesystem::path& out) : out_(out) {
    std::error_code ec;
    check(!std::filesystem::exists(out, ec) || std::filesystem::is_directory(out, ec), ErrorKind::Invalid,
          "the output '" + out.string() + "' exists and is not a folder");
    std::filesystem::create_directories(out, ec);
    check(!ec, ErrorKind::Io, "cannot create the output folder '" + out.string() + "': " + ec.message());
    dir_ = out / (".tetra-compile-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_, ec);
    std::filesystem::create_directories(dir_);
  }
  ~StagingFolder() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  StagingFolder(const StagingFolder&) = delete;
  StagingFolder& operator=(const StagingFolder&) = delete;

  const std::filesystem::path& path() const { return dir_; }
  // Moves FILE (relative to the staging folder) to OUT/FILE.
  void publish(const std::string& file) const {
    std::filesystem::create_directories((out_ / file).parent_path());
    std::filesystem::rename(dir_ / file, out_ / file);
  }

 private:
  std::filesystem::path out_, dir_;
};

}  // namespace tetra
