// Structs that cross the ABI start with `uint32_t struct_size` and only grow
// at the end. A caller built against an older header passes a smaller size:
// its fields are read, the newer ones keep their defaults. A newer caller
// passes a larger size: the fields this library does not know are ignored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace crosvm {

template <typename T>
T read_versioned(const T& in, T defaults) {
  static_assert(std::is_trivially_copyable_v<T>);
  uint32_t size;
  std::memcpy(&size, &in, sizeof(size));
  const size_t known = std::min<size_t>(size, sizeof(T));
  if (known > sizeof(uint32_t)) {
    std::memcpy(reinterpret_cast<uint8_t*>(&defaults) + sizeof(uint32_t),
                reinterpret_cast<const uint8_t*>(&in) + sizeof(uint32_t), known - sizeof(uint32_t));
  }
  return defaults;
}

}  // namespace crosvm
