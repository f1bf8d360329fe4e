#include "devices/bus.h"

#include <algorithm>
#include <mutex>

namespace crosvm {

Result<void> Bus::insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length) {
  if (length == 0 || base + length < base) {
    return make_error(ErrorCode::kDevice, "{} bus: bad range [{:#x}, +{:#x}) for {}", name_, base,
                      length, device->name());
  }
  std::unique_lock lock(mutex_);
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + length) {
    return make_error(ErrorCode::kDevice, "{} bus: {} at {:#x} overlaps {} at {:#x}", name_,
                      device->name(), base, next->second.device->name(), next->first);
  }
  if (next != ranges_.begin()) {
    auto previous = std::prev(next);
    if (previous->first + previous->second.length > base) {
      return make_error(ErrorCode::kDevice, "{} bus: {} at {:#x} overlaps {} at {:#x}", name_,
                        device->name(), base, previous->second.device->name(), previous->first);
    }
  }
  ranges_.emplace(base, Range{length, std::move(device)});
  return {};
}

bool Bus::remove(uint64_t base) {
  std::unique_lock lock(mutex_);
  return ranges_.erase(base) != 0;
}

Bus::Target Bus::find(uint64_t address, uint64_t length) const {
  std::shared_lock lock(mutex_);
  auto after = ranges_.upper_bound(address);
  if (after == ranges_.begin()) return {};
  auto candidate = std::prev(after);
  const uint64_t offset = address - candidate->first;
  if (offset >= candidate->second.length || length > candidate->second.length - offset) return {};
  return {candidate->second.device, offset};
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) const {
  Target target = find(address, data.size());
  if (!target.device) {
    std::fill(data.begin(), data.end(), 0xff);
    return false;
  }
  target.device->read(target.offset, data);
  return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) const {
  Target target = find(address, data.size());
  if (!target.device) return false;
  target.device->write(target.offset, data);
  return true;
}

}  // namespace crosvm
