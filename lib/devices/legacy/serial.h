// An 8250/16550A UART as Linux's 8250 driver expects it: interrupt-driven
// transmit (THR-empty interrupt) and receive (data-available interrupt),
// loopback for the driver's probe, a scratch register, a 16-byte-FIFO look.
// Transmission is instant: bytes go to the output sink as the guest writes
// them. Host input is queued here and delivered as the guest reads.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include "devices/bus.h"
#include "devices/host_input.h"
#include "devices/irq.h"

namespace crosvm {

class Serial final : public BusDevice, public HostInput {
 public:
  using OutputSink = std::function<void(std::span<const uint8_t>)>;
  static constexpr size_t kInputCapacity = 4096;  // host bytes waiting for the guest

  // COM1..COM4 ports and IRQs on a PC.
  static constexpr uint16_t kPorts[4] = {0x3f8, 0x2f8, 0x3e8, 0x2e8};
  static constexpr uint8_t kIrqs[4] = {4, 3, 4, 3};
  static constexpr uint64_t kRegisterCount = 8;

  Serial(std::string_view name, std::shared_ptr<IrqLine> irq, OutputSink output);

  std::string_view name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Queues host input for the guest; returns how many bytes fit.
  size_t queue_input(std::span<const uint8_t> bytes) override;
  size_t input_space() const;
  // Called (on a vCPU thread, so it must only post work) when the guest has
  // read input and room has opened after queue_input() ran out of space.
  void set_input_space_listener(std::function<void()> listener) override;

 private:
  uint8_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint8_t value);
  uint8_t interrupt_identification();
  bool loopback() const;
  void push_received(uint8_t byte);

  std::string_view name_;
  std::shared_ptr<IrqLine> irq_;
  OutputSink output_;
  std::function<void()> input_space_listener_;

  mutable std::mutex mutex_;
  std::deque<uint8_t> input_;
  bool input_was_full_ = false;
  bool thr_empty_pending_ = false;
  uint8_t interrupt_enable_ = 0;
  uint8_t line_control_ = 0x03;  // 8 data bits
  uint8_t modem_control_ = 0x08;  // OUT2, as firmware leaves it
  uint8_t scratch_ = 0;
  uint8_t divisor_low_ = 0x0c;    // 9600 baud
  uint8_t divisor_high_ = 0;
  bool fifo_enabled_ = false;
};

}  // namespace crosvm
