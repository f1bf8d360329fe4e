#include "base/log.h"

#include <unistd.h>

#include <span>
#include <string>

#include "base/file_io.h"

namespace crosvm {

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warning";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "log";
}

void write_log_to_stderr(LogLevel level, std::string_view message) {
  std::string line = fmt::format("crosvm: {}: {}\n", log_level_name(level), message);
  write_all(STDERR_FILENO, std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
}

Logger::Logger() : sink_(write_log_to_stderr), max_level_(LogLevel::kInfo) {}

}  // namespace crosvm
