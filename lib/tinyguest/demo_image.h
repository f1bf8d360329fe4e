// The built-in demo guest (lib/tinyguest/demo.c), an ELF booted like a kernel.
#pragma once

#include <cstdint>
#include <span>

namespace crosvm {

std::span<const uint8_t> demo_kernel_image();

}  // namespace crosvm
