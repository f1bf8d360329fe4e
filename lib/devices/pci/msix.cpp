#include "devices/pci/msix.h"

#include <cstring>

namespace crosvm::pci {
namespace {

constexpr uint64_t kAddressLow = 0;
constexpr uint64_t kAddressHigh = 4;
constexpr uint64_t kData = 8;
constexpr uint64_t kVectorControl = 12;
constexpr uint32_t kVectorMasked = 1;

}  // namespace

Result<std::unique_ptr<MsixTable>> MsixTable::create(uint16_t vectors, MsiRouter& router,
                                                     std::shared_ptr<GuestLog> log) {
  if (vectors == 0 || vectors > kMaxVectors) {
    return make_error(ErrorCode::kInternal, "an MSI-X table of {} vectors", vectors);
  }
  std::vector<Entry> entries(vectors);
  for (Entry& entry : entries) {
    MsiRouter::Line line = CROSVM_TRY(router.allocate_msi_line());
    entry.gsi = line.gsi;
    entry.event = std::make_unique<EventFd>(std::move(line.event));
  }
  return std::unique_ptr<MsixTable>(new MsixTable(std::move(entries), router, std::move(log)));
}

bool MsixTable::masked_locked(const Entry& entry) const {
  return !enabled_ || function_masked_ || entry.masked;
}

void MsixTable::update_locked(Entry& entry) {
  if (masked_locked(entry)) return;
  if (entry.route_stale) {
    if (auto routed = router_.route_msi(entry.gsi, entry.address, entry.data); !routed) {
      log_->warn("MSI-X: cannot route GSI {}: {}", entry.gsi, routed.error().message);
      return;
    }
    entry.route_stale = false;
  }
  if (entry.pending) {
    entry.pending = false;
    entry.event->signal();
  }
}

void MsixTable::read_table(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0) return;
  std::lock_guard lock(mutex_);
  const uint64_t index = offset / kEntrySize;
  if (index >= entries_.size()) return;
  const Entry& entry = entries_[index];
  uint8_t raw[kEntrySize];
  const uint32_t address_low = static_cast<uint32_t>(entry.address);
  const uint32_t address_high = static_cast<uint32_t>(entry.address >> 32);
  const uint32_t control = entry.masked ? kVectorMasked : 0;
  std::memcpy(raw + kAddressLow, &address_low, 4);
  std::memcpy(raw + kAddressHigh, &address_high, 4);
  std::memcpy(raw + kData, &entry.data, 4);
  std::memcpy(raw + kVectorControl, &control, 4);
  std::memcpy(data.data(), raw + offset % kEntrySize, data.size());
}

void MsixTable::write_table(uint64_t offset, std::span<const uint8_t> data) {
  if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0) return;
  {
    std::lock_guard lock(mutex_);
    write_entry_locked(offset, data);
  }
  notify_listener();
}

void MsixTable::write_entry_locked(uint64_t offset, std::span<const uint8_t> data) {
  const uint64_t index = offset / kEntrySize;
  if (index >= entries_.size()) return;
  Entry& entry = entries_[index];
  for (size_t done = 0; done < data.size(); done += 4) {
    uint32_t value;
    std::memcpy(&value, data.data() + done, 4);
    switch ((offset + done) % kEntrySize) {
      case kAddressLow:
        entry.route_stale |= static_cast<uint32_t>(entry.address) != value;
        entry.address = (entry.address & ~uint64_t{0xffffffff}) | value;
        break;
      case kAddressHigh:
        entry.route_stale |= static_cast<uint32_t>(entry.address >> 32) != value;
        entry.address = (entry.address & uint64_t{0xffffffff}) | (uint64_t{value} << 32);
        break;
      case kData:
        entry.route_stale |= entry.data != value;
        entry.data = value;
        break;
      case kVectorControl:
        entry.masked = (value & kVectorMasked) != 0;
        break;
    }
  }
  update_locked(entry);
}

void MsixTable::read_pba(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if ((data.size() != 4 && data.size() != 8) || offset % data.size() != 0) return;
  std::lock_guard lock(mutex_);
  for (size_t bit = 0; bit < data.size() * 8; ++bit) {
    const uint64_t index = offset * 8 + bit;
    if (index < entries_.size() && entries_[index].pending) data[bit / 8] |= uint8_t(1u << (bit % 8));
  }
}

void MsixTable::set_control(bool enabled, bool function_masked) {
  {
    std::lock_guard lock(mutex_);
    enabled_ = enabled;
    function_masked_ = function_masked;
    for (Entry& entry : entries_) update_locked(entry);
  }
  notify_listener();
}

std::optional<int> MsixTable::direct_fd(uint16_t vector) const {
  std::lock_guard lock(mutex_);
  if (vector >= entries_.size()) return std::nullopt;
  const Entry& entry = entries_[vector];
  if (masked_locked(entry) || entry.route_stale) return std::nullopt;
  return entry.event->fd();
}

void MsixTable::set_route_listener(std::function<void()> listener) {
  std::lock_guard lock(listener_mutex_);
  listener_ = std::move(listener);
}

void MsixTable::notify_listener() {
  std::lock_guard lock(listener_mutex_);
  if (listener_) listener_();
}

bool MsixTable::enabled() const {
  std::lock_guard lock(mutex_);
  return enabled_;
}

void MsixTable::trigger(uint16_t vector) {
  std::lock_guard lock(mutex_);
  if (vector >= entries_.size()) return;
  Entry& entry = entries_[vector];
  entry.pending = true;
  update_locked(entry);
}

void MsixTable::reset() {
  {
    std::lock_guard lock(mutex_);
    enabled_ = false;
    function_masked_ = false;
    for (Entry& entry : entries_) {
      entry.address = 0;
      entry.data = 0;
      entry.masked = true;
      entry.pending = false;
      entry.route_stale = true;
    }
  }
  notify_listener();
}

}  // namespace crosvm::pci
