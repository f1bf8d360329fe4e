// An address space (port I/O or MMIO) that maps ranges to devices. Lookups
// are one ordered-map search; accesses no device claims read as all-ones and
// drop writes, as on a PC, without logging (Linux probes many such ports).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string_view>

#include "base/result.h"

namespace crosvm {

class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual std::string_view name() const = 0;
  // `offset` is relative to the base the device was inserted at; `data` is
  // 1 to 8 bytes. Devices lock their own state: vCPUs call in concurrently.
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string_view name) : name_(name) {}

  // Fails when [base, base + length) is empty, wraps, or overlaps a range.
  Result<void> insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length);
  // Removes the range starting exactly at `base`; false when there is none.
  bool remove(uint64_t base);

  // Return false when no device claims the whole access (reads then see 0xff).
  bool read(uint64_t address, std::span<uint8_t> data) const;
  bool write(uint64_t address, std::span<const uint8_t> data) const;

  struct Target {
    std::shared_ptr<BusDevice> device;
    uint64_t offset;
  };
  // The device owning [address, address + length), if one owns all of it.
  Target find(uint64_t address, uint64_t length) const;

 private:
  struct Range {
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  std::string_view name_;
  mutable std::shared_mutex mutex_;  // ranges change at run time (PCI BARs)
  std::map<uint64_t, Range> ranges_;
};

}  // namespace crosvm
