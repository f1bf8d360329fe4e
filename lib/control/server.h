// The control socket (crosvm's -s/--socket): a Unix SOCK_SEQPACKET socket,
// mode 0600, on which clients send one JSON request per packet and get one
// JSON response per packet, in crosvm's dialect or ours (protocol.h). It runs on the VM's event loop, serves
// several clients at once, and answers bad input with an error (or drops
// the client) without disturbing the VM or the other clients.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "base/log.h"
#include "base/result.h"
#include "control/protocol.h"

namespace boost::asio {
class io_context;
}

namespace crosvm::control {

// What the server asks of the VM. Called on the event loop.
class ControlTarget {
 public:
  virtual ~ControlTarget() = default;
  // Starts an orderly stop and returns at once.
  virtual void stop() = 0;
  // Takes every vCPU out of KVM_RUN; `done` runs (on any thread) once they
  // all are, or with the reason they cannot be.
  virtual void suspend(std::function<void(Result<void>)> done) = 0;
  virtual Result<void> resume() = 0;
  virtual Status status() const = 0;
  virtual Result<void> resize_disk(uint32_t index, uint64_t new_size) = 0;
  // Presses the ACPI power button (the guest decides what to do with it).
  virtual Result<void> press_power_button() = 0;
};

struct ServerLimits {
  size_t max_clients = 16;
  // A client that sends no request (or takes no answer) for this long is
  // dropped: it may not hold one of the connections forever.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};
};

// Where a socket for `path` goes: `path` itself, or `path`/crosvm-PID.sock
// when `path` is a directory (as crosvm does); the `sequence`th VM of the
// process in that directory (from 2) gets crosvm-PID-SEQUENCE.sock.
Result<std::string> resolve_socket_path(const std::string& path, unsigned sequence = 1);
inline constexpr unsigned kMaxVmsPerDirectory = 64;

class ControlServer {
 public:
  // Binds the socket at resolve_socket_path(path). A socket file left by a
  // process that died is replaced; one a live process listens on, one that
  // cannot be probed (EACCES), or a file that is not a socket, is refused.
  static Result<std::unique_ptr<ControlServer>> bind(boost::asio::io_context& context,
                                                     const std::string& path, ControlTarget& target,
                                                     const Logger& logger, ServerLimits limits = {});
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const;
  // Starts accepting clients (the loop must run on one thread).
  void start();
  // Stops accepting, drops every client and removes the socket file.
  // Idempotent; on the loop, or when the loop no longer runs.
  void shutdown();

  struct State;  // defined and used only in server.cpp

 private:
  explicit ControlServer(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace crosvm::control
