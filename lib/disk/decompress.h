// qcow2's compressed clusters: zlib's raw deflate and zstd. Both libraries
// are loaded when the first compressed cluster is read, not with
// libcrosvm.so: most VMs never read one, and every process that maps the
// library (the VMM and each jailed device's) would otherwise load and
// relocate both at start. A jailed disk whose image is qcow2 loads them
// before its jail takes the file system away (preload_decompressors).
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"

namespace crosvm::disk {

enum class Compression { kDeflate, kZstd };

// Decompresses `input` into `output`: true when it filled exactly
// `output.size()` bytes (a cluster), false when the data does not
// decompress to that. An error when the library cannot be loaded.
Result<bool> decompress_cluster(Compression compression, std::span<const uint8_t> input,
                                std::span<uint8_t> output);

// Loads both libraries now, if they were not already (thread-safe; a
// failure is remembered and given to every later call).
Result<void> preload_decompressors();

}  // namespace crosvm::disk
