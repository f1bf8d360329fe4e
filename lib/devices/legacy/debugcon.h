// Bochs's debug console (crosvm's --serial hardware=debugcon, QEMU's
// isa-debugcon): one I/O port, 0x402 by default, where firmware (OVMF,
// SeaBIOS) and small guests print without any set-up. Each byte written
// is output; a read returns 0xe9, which is how a guest tells that the port
// is there. It has no input and no interrupt.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "devices/bus.h"

namespace crosvm {

class Debugcon final : public BusDevice {
 public:
  static constexpr uint8_t kReadback = 0xe9;
  using OutputSink = std::function<void(std::span<const uint8_t>)>;

  Debugcon(std::string name, OutputSink output) : name_(std::move(name)), output_(std::move(output)) {}

  std::string_view name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  const std::string name_;
  OutputSink output_;  // thread-safe: vCPUs call in concurrently
};

}  // namespace crosvm
