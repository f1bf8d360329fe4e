// The VMM's part of a userspace vsock (--vsock socket=PATH): what a jailed
// device cannot do for itself, since it opens nothing and reaches no path.
//
//   - The listening Unix socket at PATH that host programs connect to
//     (then "CONNECT <port>\n" reaches the guest's listener on that port).
//     It is bound here and passed to the device, which accepts on it.
//   - A broker for the guest's connections to host port P: the device asks
//     over a socketpair, a thread here connects to PATH_P and passes the
//     stream back (SCM_RIGHTS), or the errno.
//
// Destroying it stops the broker and removes PATH. Each request costs one
// non-blocking connect(); the device bounds how many are outstanding.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/host_service.h"
#include "base/log.h"
#include "base/result.h"
#include "base/thread.h"
#include "base/unique_fd.h"

namespace crosvm::virtio::vsock {

// One request on the broker's socketpair (a SOCK_SEQPACKET message each
// way); the answer carries the connected stream when `error` is 0.
struct BrokerRequest {
  uint64_t id;  // the device's, echoed
  uint32_t port;
  uint32_t reserved;
};
struct BrokerAnswer {
  uint64_t id;
  int32_t error;  // 0, or the errno of the connect
  uint32_t reserved;
};

class HostSide final : public HostService {
 public:
  // Binds and listens on `path` (a dead VM's socket there is removed; a
  // live one is refused) and starts the broker.
  static Result<std::unique_ptr<HostSide>> open(const std::string& path, const Logger& logger);
  ~HostSide() override;

  // For the device: taken once each.
  UniqueFd take_listener() { return std::move(listener_); }
  UniqueFd take_broker() { return std::move(device_end_); }

  HostSide(const HostSide&) = delete;
  HostSide& operator=(const HostSide&) = delete;

 private:
  HostSide(std::string path, Logger logger) : path_(std::move(path)), logger_(std::move(logger)) {}
  void serve();
  // Connects to `<path>_<port>`: the stream, or none and `error` set.
  UniqueFd connect_port(uint32_t port, int& error) const;

  std::string path_;
  Logger logger_;
  UniqueFd listener_;
  UniqueFd device_end_;
  UniqueFd broker_end_;
  UniqueFd stop_;  // an eventfd: tells the broker to finish
  Thread thread_;
};

// The path a guest's connection to host port `port` reaches.
std::string port_path(const std::string& path, uint32_t port);

// The device's side: sends a request (never blocks: false when the
// socket is full) and reads one answer with its stream (nullopt: none waits).
bool send_broker_request(int fd, const BrokerRequest& request);
struct ReceivedAnswer {
  BrokerAnswer answer;
  UniqueFd stream;
};
Result<std::optional<ReceivedAnswer>> receive_broker_answer(int fd);

}  // namespace crosvm::virtio::vsock
