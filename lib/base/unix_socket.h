// Unix socket paths for the library's servers (the control socket, a
// vhost-user device backend) and their clients: the address with its
// length check, and making room for a new socket where a dead server left
// its own. `what` names the socket in errors ("control socket").
#pragma once

#include <sys/un.h>

#include <chrono>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

Result<sockaddr_un> unix_socket_address(const std::string& path, std::string_view what);

// What clear_stale_socket() says of a socket someone still accepts on.
inline constexpr std::string_view kSocketInUse = "is in use by a running process";

// Nothing at `path`, or a dead server's socket (removed): ok. A live
// socket (kSocketInUse), another kind of file, or a socket that cannot
// be probed (EACCES, ...) is refused and left alone.
Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& address, std::string_view what);

// A client socket of `type` (SOCK_STREAM, SOCK_DGRAM) connected to the
// socket at `path`, blocking. While nothing listens there yet (ENOENT,
// ECONNREFUSED) it tries again every 10 ms for up to `patience`.
Result<UniqueFd> connect_unix_socket(const std::string& path, int type, std::string_view what,
                                     std::chrono::milliseconds patience);

}  // namespace crosvm
