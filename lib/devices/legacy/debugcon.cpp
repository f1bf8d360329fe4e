#include "devices/legacy/debugcon.h"

#include <algorithm>

namespace crosvm {

void Debugcon::read(uint64_t /*offset*/, std::span<uint8_t> data) {
  // The bus hands a one-byte range only accesses of one byte.
  std::fill(data.begin(), data.end(), kReadback);
}

void Debugcon::write(uint64_t /*offset*/, std::span<const uint8_t> data) {
  output_(data);
}

}  // namespace crosvm
