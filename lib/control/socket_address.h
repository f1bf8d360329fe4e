// The sockaddr_un for a control socket path, with the length check that
// both the server and the client need.
#pragma once

#include <sys/un.h>

#include <string>

#include "base/result.h"

namespace crosvm::control {

inline Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return make_error(ErrorCode::kInvalidArgument, "control socket path \"{}\" must have 1 to {} bytes",
                      path, sizeof(address.sun_path) - 1);
  }
  path.copy(address.sun_path, path.size());
  return address;
}

}  // namespace crosvm::control
