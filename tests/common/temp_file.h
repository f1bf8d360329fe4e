// A file in $TMPDIR (or /tmp) holding the given bytes, removed when the
// object goes: disk images for the unit and guest tests.
#pragma once

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

class TempFile {
 public:
  TempFile(const std::string& prefix, std::span<const uint8_t> contents) {
    const char* directory = std::getenv("TMPDIR");
    path_ = std::string(directory != nullptr ? directory : "/tmp") + "/" + prefix + "-XXXXXX";
    const int fd = ::mkstemp(path_.data());
    REQUIRE(fd >= 0);
    const ssize_t written = ::write(fd, contents.data(), contents.size());
    ::close(fd);
    REQUIRE(written == static_cast<ssize_t>(contents.size()));
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};
