#include "arch/x86_64/acpi/aml.h"

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <string>

namespace crosvm::acpi::aml {
namespace {

constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;
constexpr uint8_t kRootChar = 0x5c;
constexpr uint8_t kParentPrefixChar = 0x5e;
constexpr uint8_t kNullName = 0x00;
constexpr uint8_t kReturnOp = 0xa4;

// Resource descriptor tags.
constexpr uint8_t kIrqNoFlags = 0x22;
constexpr uint8_t kIoPort = 0x47;
constexpr uint8_t kEndTag = 0x79;
constexpr uint8_t kMemory32Fixed = 0x86;
constexpr uint8_t kDWordAddressSpace = 0x87;
constexpr uint8_t kWordAddressSpace = 0x88;
constexpr uint8_t kQWordAddressSpace = 0x8a;

constexpr uint8_t kResourceMemory = 0;
constexpr uint8_t kResourceIo = 1;
constexpr uint8_t kResourceBus = 2;
// General flags: a producer whose minimum and maximum are fixed.
constexpr uint8_t kMinMaxFixed = 0x0c;

// Grows `out` once, then copies: a range insert into a vector of one byte
// made GCC 12 at -O3 warn about its own reallocation path (-Warray-bounds).
void append(Bytes& out, const Bytes& more) {
  const size_t old_size = out.size();
  out.resize(old_size + more.size());
  std::copy(more.begin(), more.end(), out.begin() + static_cast<std::ptrdiff_t>(old_size));
}

template <typename T>
void append_le(Bytes& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// Opcode(s), PkgLength, then the body.
Bytes with_pkg_length(std::initializer_list<uint8_t> opcode, const Bytes& body) {
  Bytes out(opcode);
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

}  // namespace

Bytes pkg_length(size_t content_length) {
  // One byte holds up to 63; otherwise 1-3 more bytes follow and the lead
  // byte keeps only its low nibble (ACPI 6.4, 20.2.4).
  if (content_length + 1 <= 0x3f) return {static_cast<uint8_t>(content_length + 1)};
  for (size_t extra = 1; extra <= 3; ++extra) {
    const size_t total = content_length + 1 + extra;
    if (total < (1ull << (4 + 8 * extra))) {
      Bytes out{static_cast<uint8_t>((extra << 6) | (total & 0x0f))};
      for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      return out;
    }
  }
  assert(false && "AML package too large");
  return {};
}

Bytes name_string(std::string_view path) {
  Bytes out;
  while (!path.empty() && (path.front() == '\\' || path.front() == '^')) {
    out.push_back(path.front() == '\\' ? kRootChar : kParentPrefixChar);
    path.remove_prefix(1);
  }
  std::vector<std::string> segments;
  while (!path.empty()) {
    const size_t dot = path.find('.');
    std::string segment(path.substr(0, dot));
    assert(!segment.empty() && segment.size() <= 4);
    segment.resize(4, '_');
    segments.push_back(segment);
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  if (segments.empty()) {
    out.push_back(kNullName);
  } else if (segments.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segments.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segments.size()));
  }
  for (const std::string& segment : segments) out.insert(out.end(), segment.begin(), segment.end());
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, static_cast<uint8_t>(value));
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, static_cast<uint16_t>(value));
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, static_cast<uint32_t>(value));
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value);
  }
  return out;
}

Bytes string(std::string_view text) {
  Bytes out(text.size() + 2, 0);  // prefix, characters, NUL
  out[0] = kStringPrefix;
  std::copy(text.begin(), text.end(), out.begin() + 1);
  return out;
}

Bytes eisa_id(std::string_view id) {
  assert(id.size() == 7);
  auto letter = [&](size_t i) { return static_cast<uint32_t>(id[i] - 0x40) & 0x1f; };
  auto hex = [&](size_t i) {
    const char c = id[i];
    return static_cast<uint32_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  };
  const uint32_t vendor = (letter(0) << 10) | (letter(1) << 5) | letter(2);
  const uint32_t product = (hex(3) << 12) | (hex(4) << 8) | (hex(5) << 4) | hex(6);
  // Both halves are stored big-endian inside a little-endian DWord.
  const uint32_t value = ((vendor >> 8) & 0xff) | ((vendor & 0xff) << 8) |
                         (((product >> 8) & 0xff) << 16) | ((product & 0xff) << 24);
  Bytes out{kDWordPrefix};
  append_le(out, value);
  return out;
}

Bytes package(const std::vector<Bytes>& elements) {
  assert(elements.size() <= 0xff);
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const Bytes& element : elements) append(body, element);
  return with_pkg_length({kPackageOp}, body);
}

Bytes buffer(const Bytes& data) {
  Bytes body = integer(data.size());
  append(body, data);
  return with_pkg_length({kBufferOp}, body);
}

Bytes name(std::string_view object, const Bytes& value) {
  Bytes out{kNameOp};
  append(out, name_string(object));
  append(out, value);
  return out;
}

Bytes scope(std::string_view path, const std::vector<Bytes>& terms) {
  Bytes body = name_string(path);
  append(body, join(terms));
  return with_pkg_length({kScopeOp}, body);
}

Bytes device(std::string_view object, const std::vector<Bytes>& terms) {
  Bytes body = name_string(object);
  append(body, join(terms));
  return with_pkg_length({kExtOpPrefix, kDeviceOp}, body);
}

Bytes method(std::string_view object, uint8_t arguments, bool serialized,
             const std::vector<Bytes>& terms) {
  Bytes body = name_string(object);
  body.push_back(static_cast<uint8_t>((arguments & 0x7) | (serialized ? 0x08 : 0)));
  append(body, join(terms));
  return with_pkg_length({kMethodOp}, body);
}

Bytes return_value(const Bytes& value) {
  Bytes out{kReturnOp};
  append(out, value);
  return out;
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
  Bytes data = join(descriptors);
  data.push_back(kEndTag);
  data.push_back(0);  // checksum 0: "the sum is not checked"
  return buffer(data);
}

Bytes io_port(uint16_t base, uint8_t length) {
  Bytes out{kIoPort, 0x01};  // 16-bit address decode
  append_le(out, base);
  append_le(out, base);
  out.push_back(1);  // alignment
  out.push_back(length);
  return out;
}

Bytes irq(uint8_t number) {
  Bytes out{kIrqNoFlags};
  append_le(out, static_cast<uint16_t>(1u << number));
  return out;
}

Bytes memory32_fixed(uint32_t base, uint32_t length, bool writable) {
  Bytes out{kMemory32Fixed, 0x09, 0x00, static_cast<uint8_t>(writable ? 1 : 0)};
  append_le(out, base);
  append_le(out, length);
  return out;
}

namespace {

Bytes word_address_space(uint8_t type, uint8_t type_flags, uint16_t first, uint16_t last) {
  Bytes out{kWordAddressSpace, 0x0d, 0x00, type, kMinMaxFixed, type_flags};
  append_le(out, static_cast<uint16_t>(0));  // granularity
  append_le(out, first);
  append_le(out, last);
  append_le(out, static_cast<uint16_t>(0));  // translation
  append_le(out, static_cast<uint16_t>(last - first + 1));
  return out;
}

// Memory type flags: read-write, and cacheable or not.
uint8_t memory_flags(bool cacheable) { return cacheable ? 0x03 : 0x01; }

}  // namespace

Bytes word_bus_number(uint16_t first, uint16_t last) {
  return word_address_space(kResourceBus, 0, first, last);
}

Bytes word_io_range(uint16_t first, uint16_t last) {
  return word_address_space(kResourceIo, 0x03 /* ISA and non-ISA ranges */, first, last);
}

Bytes dword_memory_range(uint32_t first, uint32_t last, bool cacheable) {
  Bytes out{kDWordAddressSpace, 0x17, 0x00, kResourceMemory, kMinMaxFixed, memory_flags(cacheable)};
  append_le(out, static_cast<uint32_t>(0));
  append_le(out, first);
  append_le(out, last);
  append_le(out, static_cast<uint32_t>(0));
  append_le(out, static_cast<uint32_t>(last - first + 1));
  return out;
}

Bytes qword_memory_range(uint64_t first, uint64_t last, bool cacheable) {
  Bytes out{kQWordAddressSpace, 0x2b, 0x00, kResourceMemory, kMinMaxFixed, memory_flags(cacheable)};
  append_le(out, static_cast<uint64_t>(0));
  append_le(out, first);
  append_le(out, last);
  append_le(out, static_cast<uint64_t>(0));
  append_le(out, last - first + 1);
  return out;
}

Bytes join(const std::vector<Bytes>& terms) {
  Bytes out;
  for (const Bytes& term : terms) append(out, term);
  return out;
}

}  // namespace crosvm::acpi::aml
