// A channel from the VMM to a device process for what vhost-user does not
// carry: today, resizing a disk. One request at a time, each a fixed-size
// message answered by a fixed-size reply (a result code and a sentence),
// over a socketpair the VMM makes for each device process. The device
// serves it on a thread of its own; what the guest sees of a change (a
// disk's new capacity) goes through vhost-user's backend channel as usual.
//
// Neither side trusts the other's bytes: a short or malformed message, a
// reply that does not come within the timeout, or a closed channel is an
// error, never a crash or a wait without end.
#pragma once

#include <cstdint>
#include <functional>

#include "base/result.h"

namespace crosvm::sandbox {

enum class ControlRequest : uint32_t {
  kResize = 1,  // value: the disk's new size in bytes
};

// The VMM's side: sends the request on `fd` and waits (at most
// `timeout_ms`) for the reply. The device's error comes back as an Error
// with its code and message.
Result<void> send_control_request(int fd, ControlRequest request, uint64_t value, int timeout_ms);

// The device's side: answers requests on `fd` with `handler` until the
// VMM closes the channel (returns) or sends garbage (the error).
using ControlHandler = std::function<Result<void>(ControlRequest, uint64_t)>;
Result<void> serve_control_requests(int fd, const ControlHandler& handler);

}  // namespace crosvm::sandbox
