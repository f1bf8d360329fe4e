// The sockaddr_un for a control socket path, with the length check that
// both the server and the client need.
#pragma once

#include <string>

#include "base/unix_socket.h"

namespace crosvm::control {

inline Result<sockaddr_un> socket_address(const std::string& path) {
  return unix_socket_address(path, "control socket");
}

}  // namespace crosvm::control
