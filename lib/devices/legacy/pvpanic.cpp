#include "devices/legacy/pvpanic.h"

#include <algorithm>

namespace crosvm {

void PvPanic::read(uint64_t /*offset*/, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (data.size() == 1) data[0] = kPanicked | kCrashLoaded;  // the events it understands
}

void PvPanic::write(uint64_t /*offset*/, std::span<const uint8_t> data) {
  if (data.size() == 1 && (data[0] & kPanicked) != 0) power_.report_panic("pvpanic");
}

}  // namespace crosvm
