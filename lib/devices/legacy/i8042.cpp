#include "devices/legacy/i8042.h"

namespace crosvm {
namespace {

constexpr uint64_t kDataOffset = 0;
constexpr uint64_t kCommandOffset = 4;

constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusLastWasCommand = 0x08;
constexpr uint8_t kStatusUnlocked = 0x10;

constexpr uint8_t kReadCommandByte = 0x20;
constexpr uint8_t kWriteCommandByte = 0x60;
constexpr uint8_t kDisableAux = 0xa7;
constexpr uint8_t kEnableAux = 0xa8;
constexpr uint8_t kTestAux = 0xa9;
constexpr uint8_t kSelfTest = 0xaa;
constexpr uint8_t kTestKeyboard = 0xab;
constexpr uint8_t kDisableKeyboard = 0xad;
constexpr uint8_t kEnableKeyboard = 0xae;
constexpr uint8_t kReadOutputPort = 0xd0;
constexpr uint8_t kWriteOutputPort = 0xd1;
constexpr uint8_t kWriteKeyboardBuffer = 0xd2;
constexpr uint8_t kWriteAuxBuffer = 0xd3;
constexpr uint8_t kWriteAux = 0xd4;
constexpr uint8_t kPulseReset = 0xfe;

constexpr uint8_t kCommandByteKeyboardDisabled = 0x10;
constexpr uint8_t kCommandByteAuxDisabled = 0x20;

constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kPortTestPassed = 0x00;
constexpr uint8_t kAuxTestNoDevice = 0x01;  // "clock line stuck low": no aux port
constexpr uint8_t kOutputPortResetLine = 0x01;  // 0 = hold the CPU in reset
constexpr uint8_t kOutputPortDefault = 0x03;    // reset line high, A20 enabled

}  // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0xff);
  if (out.size() != 1) return;
  std::lock_guard lock(mutex_);
  if (offset == kCommandOffset) {
    out[0] = status();
  } else if (offset == kDataOffset) {
    out[0] = output_.value_or(0);
    output_.reset();
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> in) {
  if (in.size() != 1) return;
  bool reset = false;
  {
    std::lock_guard lock(mutex_);
    if (offset == kCommandOffset) {
      last_write_was_command_ = true;
      if (in[0] == kPulseReset) {
        reset = true;
      } else {
        command(in[0]);
      }
    } else if (offset == kDataOffset) {
      last_write_was_command_ = false;
      if (pending_command_ == kWriteOutputPort && (in[0] & kOutputPortResetLine) == 0) {
        pending_command_ = 0;
        reset = true;
      } else {
        data(in[0]);
      }
    }
  }
  if (reset) power_.request_reset("i8042 reset");
}

void I8042::command(uint8_t value) {
  pending_command_ = 0;
  switch (value) {
    case kReadCommandByte: respond(command_byte_); break;
    case kWriteCommandByte:
    case kWriteOutputPort:
    case kWriteKeyboardBuffer:
    case kWriteAuxBuffer:
    case kWriteAux:
      pending_command_ = value;
      break;
    case kDisableAux: command_byte_ |= kCommandByteAuxDisabled; break;
    case kEnableAux: command_byte_ &= static_cast<uint8_t>(~kCommandByteAuxDisabled); break;
    case kTestAux: respond(kAuxTestNoDevice); break;
    case kSelfTest:
      self_tested_ = true;
      respond(kSelfTestPassed);
      break;
    case kTestKeyboard: respond(kPortTestPassed); break;
    case kDisableKeyboard: command_byte_ |= kCommandByteKeyboardDisabled; break;
    case kEnableKeyboard: command_byte_ &= static_cast<uint8_t>(~kCommandByteKeyboardDisabled); break;
    case kReadOutputPort: respond(kOutputPortDefault); break;
    default: break;  // other commands have no effect here
  }
}

void I8042::data(uint8_t value) {
  const uint8_t command = pending_command_;
  pending_command_ = 0;
  switch (command) {
    case kWriteCommandByte: command_byte_ = value; break;
    case kWriteKeyboardBuffer: respond(value); break;
    // The aux loop-back answer comes without the aux-data status bit, which
    // tells Linux at once that there is no aux port (no 0.5 s timeout).
    case kWriteAuxBuffer: respond(value); break;
    // No keyboard or mouse is attached: bytes for them go nowhere.
    default: break;
  }
}

uint8_t I8042::status() const {
  uint8_t value = kStatusUnlocked;
  if (output_) value |= kStatusOutputFull;
  if (self_tested_) value |= kStatusSystemFlag;
  if (last_write_was_command_) value |= kStatusLastWasCommand;
  return value;
}

}  // namespace crosvm
