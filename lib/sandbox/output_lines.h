// Lines out of another process's output (a device process's log pipe, a
// companion's stderr), each cut at kMaxLine: no process we start can make
// the VMM buffer without a bound. The caller's GuestLog bounds how many.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace crosvm::sandbox {

class OutputLines {
 public:
  static constexpr size_t kMaxLine = 1024;

  // Calls on_line(std::string_view) for each line `bytes` completes.
  template <typename OnLine>
  void feed(std::span<const char> bytes, OnLine&& on_line) {
    for (const char c : bytes) {
      if (c == '\n') {
        finish(on_line);
      } else if (line_.size() < kMaxLine) {
        line_.push_back(c);
      }
    }
  }
  // The output ended: a last line without its newline still counts.
  template <typename OnLine>
  void finish(OnLine&& on_line) {
    if (!line_.empty()) on_line(std::string_view(line_));
    line_.clear();
  }

 private:
  std::string line_;
};

}  // namespace crosvm::sandbox
