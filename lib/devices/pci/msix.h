// MSI-X for a PCI function: the vector table and pending-bit array the guest
// programs through a BAR, and delivery. Each vector owns a GSI and an irqfd
// bound to it; the GSI's route follows the table entry, so firing a vector
// is one eventfd write from any thread (never a vCPU exit). A masked vector
// (entry mask, function mask, or MSI-X disabled) records a pending bit
// instead, and fires when unmasked, as the PCI spec wants.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <mutex>
#include <span>
#include <vector>

#include "base/event_fd.h"
#include "base/guest_log.h"
#include "base/result.h"

namespace crosvm::pci {

// Where MSI routes live: the VM implements this over KVM_SET_GSI_ROUTING and
// KVM_IRQFD; tests use a fake.
class MsiRouter {
 public:
  virtual ~MsiRouter() = default;
  // A fresh GSI with an eventfd bound to it by irqfd (no route yet).
  struct Line {
    uint32_t gsi;
    EventFd event;
  };
  virtual Result<Line> allocate_msi_line() = 0;
  virtual Result<void> route_msi(uint32_t gsi, uint64_t address, uint32_t data) = 0;
};

class MsixTable {
 public:
  static constexpr size_t kEntrySize = 16;
  static constexpr uint16_t kMaxVectors = 2048;

  // `log` says what the guest's table entries made fail (the device's).
  static Result<std::unique_ptr<MsixTable>> create(uint16_t vectors, MsiRouter& router,
                                                   std::shared_ptr<GuestLog> log);

  uint16_t vector_count() const { return static_cast<uint16_t>(entries_.size()); }
  uint64_t table_bytes() const { return entries_.size() * kEntrySize; }
  uint64_t pba_bytes() const { return ((entries_.size() + 63) / 64) * 8; }

  // Guest accesses inside the table and the PBA (offsets relative to each);
  // anything outside, or not 4 or 8 bytes wide, reads 0 / is ignored.
  void read_table(uint64_t offset, std::span<uint8_t> data);
  void write_table(uint64_t offset, std::span<const uint8_t> data);
  void read_pba(uint64_t offset, std::span<uint8_t> data);

  // The capability's message control after a config write.
  void set_control(bool enabled, bool function_masked);
  bool enabled() const;

  // Fires `vector` (from any thread); a vector beyond the table is ignored.
  void trigger(uint16_t vector);

  // The irqfd that delivers `vector` by itself right now (MSI-X on, the
  // vector and the function unmasked, its route up to date), for a device
  // in another process to write directly; nullopt while a write to it
  // would not be seen (then trigger() records the pending bit).
  std::optional<int> direct_fd(uint16_t vector) const;
  // Called (outside the table's lock, on the thread that changed it) after
  // a guest write may have changed what direct_fd() says. One listener.
  void set_route_listener(std::function<void()> listener);

  // Back to power-on: every entry masked and zero, nothing pending, disabled.
  void reset();

 private:
  struct Entry {
    uint64_t address = 0;
    uint32_t data = 0;
    bool masked = true;
    bool pending = false;
    bool route_stale = true;  // the GSI's route lags the entry
    uint32_t gsi = 0;
    std::unique_ptr<EventFd> event;
  };
  MsixTable(std::vector<Entry> entries, MsiRouter& router, std::shared_ptr<GuestLog> log)
      : entries_(std::move(entries)), router_(router), log_(std::move(log)) {}

  bool masked_locked(const Entry& entry) const;
  // Brings the route up to date and fires pending interrupts where unmasked.
  void update_locked(Entry& entry);

  void write_entry_locked(uint64_t offset, std::span<const uint8_t> data);
  void notify_listener();

  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
  std::mutex listener_mutex_;
  std::function<void()> listener_;  // guarded by listener_mutex_
  bool enabled_ = false;
  bool function_masked_ = false;
  MsiRouter& router_;
  std::shared_ptr<GuestLog> log_;
};

}  // namespace crosvm::pci
