// Test doubles for the interfaces devices talk to.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/log.h"
#include "devices/io_events.h"
#include "devices/irq.h"
#include "devices/pci/msix.h"
#include "devices/power_events.h"
#include "devices/virtio/virtio_device.h"

namespace crosvm::testing {

// For code under test that logs guest mistakes: keeps the test output clean.
inline Logger quiet_logger() {
  return Logger([](LogLevel, std::string_view) {}, LogLevel::kError);
}

class CountingIrq final : public IrqLine {
 public:
  void trigger() override { ++count; }
  int take() { return std::exchange(count, 0); }
  int count = 0;
};

class RecordingPowerEvents final : public PowerEvents {
 public:
  void request_power_off(const std::string& source) override { events.push_back("poweroff:" + source); }
  void request_reset(const std::string& source) override { events.push_back("reset:" + source); }
  void report_panic(const std::string& source) override { events.push_back("panic:" + source); }
  std::vector<std::string> events;
};

class RecordingLevelIrq final : public LevelIrqLine {
 public:
  void set_level(bool asserted) override {
    level = asserted;
    levels.push_back(asserted);
  }
  bool level = false;
  std::vector<bool> levels;  // every call, in order
};

// MSI lines are real eventfds (so a test can see one fire) on made-up GSIs.
class FakeMsiRouter final : public pci::MsiRouter {
 public:
  Result<Line> allocate_msi_line() override {
    EventFd event = CROSVM_TRY(EventFd::create(EFD_NONBLOCK));
    const uint32_t gsi = next_gsi++;
    events[gsi] = event.fd();
    return Line{gsi, std::move(event)};
  }
  Result<void> route_msi(uint32_t gsi, uint64_t address, uint32_t data) override {
    routes[gsi] = {address, data};
    return {};
  }
  // How often the line's eventfd fired since the last look.
  uint64_t fired(uint32_t gsi) {
    uint64_t count = 0;
    return ::read(events.at(gsi), &count, sizeof(count)) == sizeof(count) ? count : 0;
  }
  uint32_t next_gsi = 24;
  std::map<uint32_t, int> events;
  std::map<uint32_t, std::pair<uint64_t, uint32_t>> routes;
};

class RecordingIoEvents final : public IoEventRegistry {
 public:
  Result<void> register_mmio(const EventFd& event, uint64_t address, uint32_t length) override {
    registered[address] = {event.fd(), length};
    return {};
  }
  Result<void> unregister_mmio(const EventFd&, uint64_t address, uint32_t) override {
    registered.erase(address);
    return {};
  }
  std::map<uint64_t, std::pair<int, uint32_t>> registered;
};

// What a device tells its driver, counted (from any thread).
class RecordingInterrupt final : public virtio::Interrupt {
 public:
  void signal_used(uint16_t) override { ++used; }
  void signal_config_change() override { ++config_changes; }
  void report_needs_reset(std::string_view why) override {
    std::lock_guard lock(mutex);
    reasons.emplace_back(why);
  }
  std::vector<std::string> needs_reset() {
    std::lock_guard lock(mutex);
    return reasons;
  }
  std::atomic<int> used{0};
  std::atomic<int> config_changes{0};

 private:
  std::mutex mutex;
  std::vector<std::string> reasons;
};

}  // namespace crosvm::testing
