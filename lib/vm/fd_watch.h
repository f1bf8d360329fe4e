// The embedder's own descriptors, watched on a VM's event loop
// (crosvm_vm_watch_fd): an embedder whose thread serves the loop inside
// crosvm_vm_run() handles its signals, terminal or sockets there too,
// without a thread of its own for them. crosvm-launch is one.
//
// Each watch owns a duplicate of the descriptor (the embedder's stays
// the embedder's, to keep or close), waits for the events its callback
// last asked for, and ends when the callback asks for none or the VM
// stops. At most kMaxWatches at once: each is a
// descriptor and an epoll registration of the embedder's making.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "base/event_loop.h"
#include "base/result.h"

namespace crosvm {

class FdWatches {
 public:
  static constexpr uint32_t kReadable = 1u;  // readable, at its end, or failed
  static constexpr uint32_t kWritable = 2u;
  static constexpr size_t kMaxWatches = 16;
  // Runs on the loop's thread with the watch's own descriptor (to read or
  // write, not to close) and the events that are ready; returns the events
  // to wait for next (0: the watch ends). May throw: the loop's failure
  // handler hears of it, and the watch ends.
  using Callback = std::function<uint32_t(int fd, uint32_t ready)>;

  explicit FdWatches(EventLoop& loop) : loop_(loop) {}
  ~FdWatches();
  FdWatches(const FdWatches&) = delete;
  FdWatches& operator=(const FdWatches&) = delete;

  // From any thread, before the loop runs or while it does. Refuses a
  // descriptor that is not open, one that is always ready (a regular file,
  // a directory: the loop would spin), events outside the two above or
  // none, and a watch beyond kMaxWatches or after shutdown().
  Result<void> add(int fd, uint32_t events, Callback callback);
  // Ends every watch, its callback not called again. On the loop's thread
  // or once no thread runs the loop. Later add()s are refused.
  void shutdown();
  size_t size() const;

 private:
  struct Watch;
  void remove(const Watch* watch);

  EventLoop& loop_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Watch>> watches_;
  bool shut_down_ = false;
};

}  // namespace crosvm
