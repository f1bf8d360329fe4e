// Devices named as text: crosvm's "key=value,..." lists (`--block
// path=disk.img,ro=true`), parsed here, once, for every front end: the C
// ABI's crosvm_config_add_device(), crosvm-launch (which passes its
// --block and --serial lists through it) and Python. A table of kinds, each
// with its keys and what it adds to a VmConfig; the first step towards the
// device registry of docs/architecture.md, which will give each kind its
// factory and status report too.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "vm/vm_config.h"

namespace crosvm {

struct KeyValue {
  std::string key;
  std::string value;  // "true" for a bare key ("ro")
  bool bare = false;  // written without '='
};

// "path=a.img,ro,id=\"x,y\"" into its items, in order. A value in double
// quotes may hold commas (no escapes inside). Refused: an empty key
// ("=x"), a quote that is not closed, text after a closing quote.
Result<std::vector<KeyValue>> split_key_values(std::string_view text);

struct DeviceKey {
  std::string_view key;
  std::string_view help;
  bool flag = false;  // true or false: may be written bare ("ro")
};

struct DeviceKind {
  std::string_view name;     // "block"
  std::string_view summary;  // one line: what the device is
  std::span<const DeviceKey> keys;
  // The key a bare first item that is no key stands for ("path" in
  // crosvm's "--block disk.img,ro"); empty for none.
  std::string_view positional;
  // Adds the device `items` describe to `config` (items already checked
  // against `keys`: none unknown, none twice).
  Result<void> (*add)(VmConfig& config, const std::vector<KeyValue>& items);
};

// Every kind, in a fixed order.
std::span<const DeviceKind> device_kinds();
const DeviceKind* find_device_kind(std::string_view name);

// "KEY=VALUE,..." with each key's help: for a front end's usage text.
std::string describe_device_kind(const DeviceKind& kind);

// Parses `options` for `kind` and adds the device to `config`. Errors
// (kInvalidArgument) are one line naming the kind and the key.
Result<void> add_device(VmConfig& config, std::string_view kind, std::string_view options);

}  // namespace crosvm
