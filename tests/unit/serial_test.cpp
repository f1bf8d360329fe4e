#include <catch2/catch.hpp>

#include <string>

#include "devices/legacy/serial.h"
#include "fakes.h"

using namespace crosvm;
using crosvm::testing::CountingIrq;

namespace {

constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScratch = 7;

struct UartFixture {
  std::shared_ptr<CountingIrq> irq = std::make_shared<CountingIrq>();
  std::string output;
  Serial uart{"serial 1", irq, [this](std::span<const uint8_t> bytes) {
                output.append(bytes.begin(), bytes.end());
              }};

  uint8_t in(uint64_t offset) {
    uint8_t value = 0;
    uart.read(offset, std::span(&value, 1));
    return value;
  }
  void out(uint64_t offset, uint8_t value) { uart.write(offset, std::span(&value, 1)); }
};

}  // namespace

TEST_CASE("bytes written to THR reach the output sink", "[serial]") {
  UartFixture f;
  for (char c : std::string("hi\n")) f.out(kData, static_cast<uint8_t>(c));
  CHECK(f.output == "hi\n");
  CHECK((f.in(kLsr) & 0x60) == 0x60);  // THR empty and transmitter idle
}

TEST_CASE("enabling the THR-empty interrupt raises it at once", "[serial]") {
  UartFixture f;
  f.out(kIer, 0x02);
  CHECK(f.irq->take() == 1);
  CHECK((f.in(kIir) & 0x0f) == 0x02);
  // Reading IIR acknowledged it.
  CHECK((f.in(kIir) & 0x0f) == 0x01);
}

TEST_CASE("each transmitted byte raises THR-empty when it is enabled", "[serial]") {
  UartFixture f;
  f.out(kData, 'a');
  CHECK(f.irq->take() == 0);
  f.out(kIer, 0x02);
  f.irq->take();
  f.out(kData, 'b');
  CHECK(f.irq->take() == 1);
}

TEST_CASE("host input sets data-ready and raises the receive interrupt", "[serial]") {
  UartFixture f;
  f.out(kIer, 0x01);
  const std::string input = "ok";
  CHECK(f.uart.queue_input(std::span(reinterpret_cast<const uint8_t*>(input.data()), input.size())) == 2);
  CHECK(f.irq->take() == 1);
  CHECK((f.in(kLsr) & 0x01) == 0x01);
  CHECK((f.in(kIir) & 0x0f) == 0x04);
  CHECK(f.in(kData) == 'o');
  CHECK(f.in(kData) == 'k');
  CHECK((f.in(kLsr) & 0x01) == 0);
  CHECK((f.in(kIir) & 0x0f) == 0x01);
}

TEST_CASE("receive data has priority over THR-empty in IIR", "[serial]") {
  UartFixture f;
  f.out(kIer, 0x03);
  const uint8_t byte = 'x';
  f.uart.queue_input(std::span(&byte, 1));
  CHECK((f.in(kIir) & 0x0f) == 0x04);
  f.in(kData);
  CHECK((f.in(kIir) & 0x0f) == 0x02);
}

TEST_CASE("enabling the receive interrupt with data waiting raises it", "[serial]") {
  UartFixture f;
  const uint8_t byte = 'x';
  f.uart.queue_input(std::span(&byte, 1));
  CHECK(f.irq->take() == 0);
  f.out(kIer, 0x01);
  CHECK(f.irq->take() == 1);
}

TEST_CASE("loopback sends THR to RBR and mirrors the modem lines", "[serial]") {
  UartFixture f;
  f.out(kMcr, 0x1a);  // loopback, OUT2, RTS: what Linux's probe writes
  CHECK((f.in(kMsr) & 0xf0) == 0x90);
  f.out(kData, 0x5a);
  CHECK(f.output.empty());
  CHECK(f.in(kData) == 0x5a);
  f.out(kMcr, 0x08);
  CHECK(f.in(kMsr) == 0xb0);
}

TEST_CASE("the divisor latch and scratch register hold their values", "[serial]") {
  UartFixture f;
  f.out(kLcr, 0x83);
  f.out(kData, 0x01);
  f.out(kIer, 0x00);
  CHECK(f.in(kData) == 0x01);
  CHECK(f.in(kIer) == 0x00);
  f.out(kLcr, 0x03);
  f.out(kData, 'z');  // DLAB clear again: a real transmit
  CHECK(f.output == "z");
  f.out(kScratch, 0xa5);
  CHECK(f.in(kScratch) == 0xa5);
}

TEST_CASE("enabling the FIFO makes the UART a 16550A", "[serial]") {
  UartFixture f;
  f.out(kIir, 0x01);
  CHECK((f.in(kIir) & 0xc0) == 0xc0);
}

TEST_CASE("input beyond the buffer is refused and the listener hears when room opens", "[serial]") {
  UartFixture f;
  int notified = 0;
  f.uart.set_input_space_listener([&] { ++notified; });
  std::vector<uint8_t> bytes(Serial::kInputCapacity + 10, 'q');
  CHECK(f.uart.queue_input(bytes) == Serial::kInputCapacity);
  CHECK(f.uart.input_space() == 0);
  for (size_t i = 0; i < Serial::kInputCapacity / 2; ++i) f.in(kData);
  CHECK(notified == 0);
  f.in(kData);
  CHECK(notified == 1);
  f.in(kData);
  CHECK(notified == 1);
}

TEST_CASE("wide accesses to the byte-wide UART read all-ones and are dropped", "[serial]") {
  UartFixture f;
  uint8_t word[2] = {'a', 'b'};
  f.uart.write(kData, word);
  CHECK(f.output.empty());
  f.uart.read(kLsr, word);
  CHECK(word[0] == 0xff);
  CHECK(word[1] == 0xff);
}
