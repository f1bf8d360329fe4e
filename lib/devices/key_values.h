// crosvm's "key=value,..." device lists (`--block path=disk.img,ro=true`):
// split once, for every front end and every device kind, and the checked
// options a device kind's factory reads.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace crosvm {

struct KeyValue {
  std::string key;
  std::string value;  // "true" for a bare key ("ro")
  bool bare = false;  // written without '='
  bool quoted = false;  // a bare value in double quotes ("\"a,1.img\",ro"): only the first, positional item
};

// "path=a.img,ro,id=\"x,y\"" into its items, in order. A value in double
// quotes may hold commas (no escapes inside), and so may a first,
// positional one ("\"a,1.img\",ro"). Refused: an empty key
// ("=x"), a quote that is not closed, text after a closing quote.
Result<std::vector<KeyValue>> split_key_values(std::string_view text);

struct DeviceKey {
  std::string_view key;
  std::string_view help;
  bool flag = false;  // true or false: may be written bare ("ro")
  std::string_view alias = {};  // another spelling crosvm takes ("out_timestamp"); parse() renames it to `key`
};

// A device kind's list after the generic checks: every key one of the
// kind's, none twice, bare only where a flag. Values are still text; the
// accessors turn them into values with one line naming the kind and key.
class DeviceOptions {
 public:
  DeviceOptions() = default;
  DeviceOptions(std::string kind, std::vector<KeyValue> items) : kind_(std::move(kind)), items_(std::move(items)) {}

  // Checks `text` against `keys`; `positional` is the key a bare first
  // item that is no key stands for (crosvm's "--block disk.img,ro"), or "".
  static Result<DeviceOptions> parse(std::string_view kind, std::span<const DeviceKey> keys,
                                     std::string_view positional, std::string_view text);

  const std::string& kind() const { return kind_; }
  const std::vector<KeyValue>& items() const { return items_; }
  std::optional<std::string> text(std::string_view key) const;
  // true/yes/on/1 or false/no/off/0; `fallback` when the key is absent.
  Result<bool> flag(std::string_view key, bool fallback) const;
  // A number in [minimum, maximum], decimal or (as crosvm's) 0x hex, 0o
  // octal, 0b binary; `fallback` when absent.
  Result<uint64_t> number(std::string_view key, uint64_t minimum, uint64_t maximum, uint64_t fallback) const;
  // Sets `key` (adding it, or replacing its value).
  void set(std::string_view key, std::string value);
  // An error (kInvalidArgument) "KIND: message".
  Error invalid(std::string_view message) const;

 private:
  std::string kind_;
  std::vector<KeyValue> items_;
};

}  // namespace crosvm
