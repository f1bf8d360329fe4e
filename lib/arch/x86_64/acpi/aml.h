// A small generator of ACPI Machine Language (ACPI 6.4, chapter 20), enough
// for a VMM's DSDT: names, scopes, devices, methods, packages, integers,
// strings, EISA IDs and the resource descriptors of _CRS (chapter 6.4).
// Each function returns the encoded bytes of one term, so a table reads like
// the ASL it stands for.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace crosvm::acpi::aml {

using Bytes = std::vector<uint8_t>;

// PkgLength for a package whose contents (after the PkgLength) are
// `content_length` bytes: the encoded length counts its own bytes too.
Bytes pkg_length(size_t content_length);
// "\_SB_.PCI0", "PCI0", "_S5_": segments padded to four characters with '_'.
Bytes name_string(std::string_view path);

Bytes integer(uint64_t value);  // Zero, One, or the smallest prefix that fits
Bytes string(std::string_view text);
Bytes eisa_id(std::string_view id);  // "PNP0A08" -> the compressed 32-bit ID
Bytes package(const std::vector<Bytes>& elements);
Bytes buffer(const Bytes& data);

Bytes name(std::string_view name, const Bytes& value);
Bytes scope(std::string_view path, const std::vector<Bytes>& terms);
Bytes device(std::string_view name, const std::vector<Bytes>& terms);
Bytes method(std::string_view name, uint8_t arguments, bool serialized,
             const std::vector<Bytes>& terms);
Bytes return_value(const Bytes& value);

// Resource descriptors, and the buffer that holds them with its end tag.
Bytes resource_template(const std::vector<Bytes>& descriptors);
Bytes io_port(uint16_t base, uint8_t length);  // fixed: min = max = base, 16-bit decode
Bytes irq(uint8_t number);                     // edge-triggered, active-high, exclusive
Bytes memory32_fixed(uint32_t base, uint32_t length, bool writable = true);
Bytes word_bus_number(uint16_t first, uint16_t last);
Bytes word_io_range(uint16_t first, uint16_t last);
Bytes dword_memory_range(uint32_t first, uint32_t last, bool cacheable);
Bytes qword_memory_range(uint64_t first, uint64_t last, bool cacheable);

// Concatenates terms (a term list).
Bytes join(const std::vector<Bytes>& terms);

}  // namespace crosvm::acpi::aml
