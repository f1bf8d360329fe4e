// The client side of the control socket: one request, one response, with a
// deadline. Blocking; used by the C ABI (crosvm_control_request) and so by
// crosvm-launch's stop/suspend/resume/status/disk commands.
#pragma once

#include <chrono>
#include <string>

#include "base/result.h"
#include "control/protocol.h"

namespace crosvm::control {

// Connects to `socket_path`, sends `request` and returns the response.
Result<Response> send_request(const std::string& socket_path, const Request& request,
                              std::chrono::milliseconds timeout);

// The same for a request that is already JSON (in either dialect); returns
// the response as received (checked to be a valid response).
Result<std::string> send_request_line(const std::string& socket_path, const std::string& request_line,
                                      std::chrono::milliseconds timeout);

}  // namespace crosvm::control
