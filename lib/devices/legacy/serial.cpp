#include "devices/legacy/serial.h"

namespace crosvm {
namespace {

// Register offsets.
constexpr uint64_t kData = 0;          // RBR (read), THR (write), DLL with DLAB
constexpr uint64_t kInterruptEnable = 1;  // IER, DLM with DLAB
constexpr uint64_t kInterruptId = 2;   // IIR (read), FCR (write)
constexpr uint64_t kLineControl = 3;
constexpr uint64_t kModemControl = 4;
constexpr uint64_t kLineStatus = 5;
constexpr uint64_t kModemStatus = 6;
constexpr uint64_t kScratch = 7;

constexpr uint8_t kIerReceivedData = 0x01;
constexpr uint8_t kIerThrEmpty = 0x02;
constexpr uint8_t kIerMask = 0x0f;

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirReceivedData = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearReceive = 0x02;

constexpr uint8_t kLcrDivisorLatch = 0x80;
constexpr uint8_t kMcrLoopback = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrIdle = 0x40;

// Without loopback the modem lines say: carrier, data set ready, clear to send.
constexpr uint8_t kMsrDefault = 0xb0;

}  // namespace

Serial::Serial(std::string_view name, std::shared_ptr<IrqLine> irq, OutputSink output)
    : name_(name), irq_(std::move(irq)), output_(std::move(output)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.size() != 1) {  // the UART has byte registers only
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    data[0] = read_register(offset);
    if (offset == kData && input_was_full_ && input_.size() < kInputCapacity / 2) {
      input_was_full_ = false;
      notify = input_space_listener_;
    }
  }
  if (notify) notify();
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  bool raise = false;
  uint8_t transmitted = 0;
  bool has_output = false;
  {
    std::lock_guard lock(mutex_);
    const uint8_t value = data[0];
    const bool divisor = (line_control_ & kLcrDivisorLatch) != 0;
    if (offset == kData && !divisor) {
      if (loopback()) {
        push_received(value);
        raise = (interrupt_enable_ & kIerReceivedData) != 0;
      } else {
        transmitted = value;
        has_output = true;
      }
      // The byte left at once, so the holding register is empty again.
      if ((interrupt_enable_ & kIerThrEmpty) != 0) {
        thr_empty_pending_ = true;
        raise = true;
      }
    } else if (offset == kInterruptEnable && !divisor) {
      const uint8_t enabled_now = value & kIerMask & ~interrupt_enable_;
      interrupt_enable_ = value & kIerMask;
      if ((enabled_now & kIerThrEmpty) != 0) {
        thr_empty_pending_ = true;
        raise = true;
      }
      if ((enabled_now & kIerReceivedData) != 0 && !input_.empty()) raise = true;
    } else {
      write_register(offset, value);
    }
  }
  // Output and interrupts happen outside the lock: the sink may block.
  if (has_output && output_) output_(std::span(&transmitted, 1));
  if (raise) irq_->trigger();
}

uint8_t Serial::read_register(uint64_t offset) {
  const bool divisor = (line_control_ & kLcrDivisorLatch) != 0;
  switch (offset) {
    case kData:
      if (divisor) return divisor_low_;
      if (input_.empty()) return 0;
      {
        const uint8_t byte = input_.front();
        input_.pop_front();
        return byte;
      }
    case kInterruptEnable: return divisor ? divisor_high_ : interrupt_enable_;
    case kInterruptId: return interrupt_identification();
    case kLineControl: return line_control_;
    case kModemControl: return modem_control_;
    case kLineStatus:
      return static_cast<uint8_t>(kLsrThrEmpty | kLsrIdle | (input_.empty() ? 0 : kLsrDataReady));
    case kModemStatus:
      if (loopback()) {
        // DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        const uint8_t mcr = modem_control_;
        return static_cast<uint8_t>(((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) |
                                    ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4));
      }
      return kMsrDefault;
    case kScratch: return scratch_;
    default: return 0xff;
  }
}

void Serial::write_register(uint64_t offset, uint8_t value) {
  const bool divisor = (line_control_ & kLcrDivisorLatch) != 0;
  switch (offset) {
    case kData:
      if (divisor) divisor_low_ = value;
      break;
    case kInterruptEnable:
      if (divisor) divisor_high_ = value;
      break;
    case kInterruptId:  // FIFO control
      fifo_enabled_ = (value & kFcrEnable) != 0;
      if ((value & kFcrClearReceive) != 0) input_.clear();
      break;
    case kLineControl: line_control_ = value; break;
    case kModemControl: modem_control_ = value & kMcrMask; break;
    case kScratch: scratch_ = value; break;
    default: break;  // line and modem status are read-only
  }
}

uint8_t Serial::interrupt_identification() {
  const uint8_t fifo = fifo_enabled_ ? kIirFifoEnabled : 0;
  if ((interrupt_enable_ & kIerReceivedData) != 0 && !input_.empty()) {
    return kIirReceivedData | fifo;
  }
  if ((interrupt_enable_ & kIerThrEmpty) != 0 && thr_empty_pending_) {
    thr_empty_pending_ = false;  // reading IIR acknowledges THR-empty
    return kIirThrEmpty | fifo;
  }
  return kIirNone | fifo;
}

bool Serial::loopback() const { return (modem_control_ & kMcrLoopback) != 0; }

void Serial::push_received(uint8_t byte) {
  if (input_.size() < kInputCapacity) input_.push_back(byte);
}

size_t Serial::queue_input(std::span<const uint8_t> bytes) {
  size_t accepted;
  bool raise;
  {
    std::lock_guard lock(mutex_);
    accepted = std::min(bytes.size(), kInputCapacity - input_.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(accepted));
    if (accepted < bytes.size() || input_.size() == kInputCapacity) input_was_full_ = true;
    raise = accepted > 0 && (interrupt_enable_ & kIerReceivedData) != 0;
  }
  if (raise) irq_->trigger();
  return accepted;
}

size_t Serial::input_space() const {
  std::lock_guard lock(mutex_);
  return kInputCapacity - input_.size();
}

void Serial::set_input_space_listener(std::function<void()> listener) {
  std::lock_guard lock(mutex_);
  input_space_listener_ = std::move(listener);
}

}  // namespace crosvm
