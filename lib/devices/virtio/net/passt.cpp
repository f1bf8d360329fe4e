#include "devices/virtio/net/passt.h"

#include <sys/socket.h>

#include <string>
#include <vector>

namespace crosvm::virtio {
namespace {

// passt logs to syslog as well and says so on stderr when there is none
// (a container, a test machine): that line tells a user nothing.
bool is_syslog_noise(std::string_view line) {
  return line.starts_with("Failed to send ") && line.ends_with(" bytes to syslog");
}

}  // namespace

Result<void> check_port_spec(std::string_view spec) {
  if (spec.size() > 256) return make_error(ErrorCode::kInvalidArgument, "a port list of {} characters", spec.size());
  for (const char c : spec) {
    const bool allowed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         c == ':' || c == ',' || c == '-' || c == '.' || c == '/' || c == '~' || c == '%' ||
                         c == '_';
    if (!allowed) return make_error(ErrorCode::kInvalidArgument, "'{}' in the port list '{}'", c, spec);
  }
  if (spec.starts_with('-')) return make_error(ErrorCode::kInvalidArgument, "the port list '{}' starts with '-'", spec);
  return {};
}

Result<StartedPasst> start_passt(const PasstOptions& options, const Logger& logger) {
  CROSVM_TRY(check_port_spec(options.tcp_ports));
  CROSVM_TRY(check_port_spec(options.udp_ports));
  auto program = sandbox::find_program(options.program);
  if (!program) {
    return make_error(ErrorCode::kDevice, "{}: user-mode networking needs passt: {} (apt install passt)", options.name,
                      program.error().message);
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "{}: socketpair", options.name);
  }
  UniqueFd ours(pair[0]), theirs(pair[1]);
  // -f: stays our child; -q: only warnings and errors; -e: those on its
  // stderr (our log); -1: quits when the NIC closes its end.
  std::vector<std::string> arguments{"-f", "-q", "-e", "-1", "--fd", "3", "--mtu", std::to_string(options.mtu)};
  if (!options.tcp_ports.empty()) arguments.insert(arguments.end(), {"-t", options.tcp_ports});
  if (!options.udp_ports.empty()) arguments.insert(arguments.end(), {"-u", options.udp_ports});
  StartedPasst started;
  started.process = CROSVM_TRY(sandbox::Companion::start({.name = "passt for " + options.name,
                                                          .program = *program,
                                                          .arguments = std::move(arguments),
                                                          .fds = {theirs.get()},
                                                          .is_noise = is_syslog_noise},
                                                         logger));
  started.connection = std::move(ours);
  return started;
}

}  // namespace crosvm::virtio
