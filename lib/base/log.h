// Per-VM logging. The embedder chooses the sink (the C ABI's log callback);
// the default writes whole lines to stderr so threads never interleave.
#pragma once

#include <functional>
#include <string_view>

#include <fmt/format.h>

namespace crosvm {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// "crosvm: LEVEL: message" on stderr: the default Logger's sink.
void write_log_to_stderr(LogLevel level, std::string_view message);

class Logger {
 public:
  using Sink = std::function<void(LogLevel, std::string_view)>;

  Logger();  // stderr, info and above
  Logger(Sink sink, LogLevel max_level) : sink_(std::move(sink)), max_level_(max_level) {}

  bool enabled(LogLevel level) const { return level <= max_level_; }
  void log(LogLevel level, std::string_view message) const {
    if (enabled(level)) sink_(level, message);
  }

  template <typename... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const {
    emit(LogLevel::kError, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    emit(LogLevel::kWarn, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    emit(LogLevel::kInfo, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    emit(LogLevel::kDebug, format, std::forward<Args>(args)...);
  }

 private:
  template <typename... Args>
  void emit(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    if (enabled(level)) sink_(level, fmt::format(format, std::forward<Args>(args)...));
  }

  Sink sink_;
  LogLevel max_level_;
};

std::string_view log_level_name(LogLevel level);

}  // namespace crosvm
