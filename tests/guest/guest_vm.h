// Runs tiny guest programs through the public C ABI, capturing the serial
// console and the log, for the guest tests.
#pragma once

#include <crosvm/crosvm.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace guest_tests {

std::string program_path(const std::string& name);

// The virtio_blk guest's disk: 64 KiB whose first two sectors say which
// they are (guest_test.cpp).
std::vector<uint8_t> virtio_blk_disk();

// What the virtio_blk guest prints when every malformed request is
// answered as it should be, whoever serves the disk (guest_test.cpp).
extern const char* const kVirtioBlkAnswers;

class GuestVm {
 public:
  // `program` is a tiny guest name ("hello"), or "" for the built-in demo.
  // `configure` adds what a test needs (disks, ...) before the VM is built.
  explicit GuestVm(const std::string& program, uint64_t memory_mib = 64, uint32_t vcpus = 1,
                   const std::function<void(crosvm_config*)>& configure = {});
  ~GuestVm();
  GuestVm(const GuestVm&) = delete;
  GuestVm& operator=(const GuestVm&) = delete;

  crosvm_vm* handle() const { return vm_; }
  void start();
  // Waits (a hang guard, not a timing check) for the guest to stop.
  crosvm_exit_reason wait_for_exit(std::chrono::seconds limit = std::chrono::seconds(120));
  // Waits until the console output contains `text`.
  bool wait_for_output(const std::string& text, std::chrono::seconds limit = std::chrono::seconds(120));
  // The same, for `text` printed after the first `offset` bytes of output.
  bool wait_for_output_after(size_t offset, const std::string& text,
                             std::chrono::seconds limit = std::chrono::seconds(120));
  void send(const std::string& text);

  std::string output() const;
  std::string log() const;

 private:
  static void on_output(const uint8_t* data, size_t length, void* userdata);
  static void on_log(int level, const char* message, void* userdata);

  crosvm_vm* vm_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  std::string log_;
};

}  // namespace guest_tests
