#include "devices/key_values.h"

#include <charconv>
#include <utility>

namespace crosvm {
namespace {

Error invalid_argument(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

const DeviceKey* find_key(std::span<const DeviceKey> keys, std::string_view key) {
  for (const DeviceKey& known : keys) {
    if (known.key == key || (!known.alias.empty() && known.alias == key)) return &known;
  }
  return nullptr;
}

std::string key_list(std::span<const DeviceKey> keys) {
  std::string list;
  for (const DeviceKey& known : keys) list += (list.empty() ? "" : ", ") + std::string(known.key);
  return list;
}

}  // namespace

Result<std::vector<KeyValue>> split_key_values(std::string_view text) {
  std::vector<KeyValue> items;
  size_t at = 0;
  while (at < text.size()) {
    KeyValue item;
    if (text[at] == '"') {  // a quoted value without a key
      const size_t close = text.find('"', at + 1);
      if (close == std::string_view::npos) return invalid_argument("a quote is not closed");
      item.key = std::string(text.substr(at + 1, close - at - 1));
      if (item.key.empty()) return invalid_argument("an empty quoted value (\"\")");
      item.value = "true";
      item.bare = true;
      item.quoted = true;
      at = close + 1;
      if (at < text.size() && text[at] != ',') {
        return invalid_argument(fmt::format("'\"{}\"': text after the closing quote", item.key));
      }
      if (at < text.size()) ++at;
      items.push_back(std::move(item));
      continue;
    }
    const size_t key_end = text.find_first_of("=,", at);
    item.key = std::string(text.substr(at, key_end == std::string_view::npos ? text.npos : key_end - at));
    at = key_end == std::string_view::npos ? text.size() : key_end;
    if (at < text.size() && text[at] == '=') {
      ++at;
      if (at < text.size() && text[at] == '"') {
        const size_t close = text.find('"', at + 1);
        if (close == std::string_view::npos) {
          return invalid_argument(fmt::format("'{}': a quote is not closed", item.key));
        }
        item.value = std::string(text.substr(at + 1, close - at - 1));
        at = close + 1;
        if (at < text.size() && text[at] != ',') {
          return invalid_argument(fmt::format("'{}': text after the closing quote", item.key));
        }
      } else {
        const size_t comma = text.find(',', at);
        item.value = std::string(text.substr(at, comma == std::string_view::npos ? text.npos : comma - at));
        at = comma == std::string_view::npos ? text.size() : comma;
      }
    } else {
      item.value = "true";
      item.bare = true;
    }
    if (item.key.empty()) {
      if (!item.bare) return invalid_argument("an item without a key (\"=...\")");
    } else {
      items.push_back(std::move(item));
    }
    if (at < text.size()) ++at;  // the comma
  }
  return items;
}

Result<DeviceOptions> DeviceOptions::parse(std::string_view kind, std::span<const DeviceKey> keys,
                                           std::string_view positional, std::string_view text) {
  auto items = split_key_values(text);
  if (!items) return invalid_argument(fmt::format("{}: {}", kind, items.error().message));
  for (size_t i = 0; i < items->size(); ++i) {
    KeyValue& item = (*items)[i];
    if (i == 0 && item.bare && (item.quoted || find_key(keys, item.key) == nullptr) && !positional.empty()) {
      item.value = std::exchange(item.key, std::string(positional));
      item.bare = false;
      item.quoted = false;
    }
    if (item.quoted) {
      return invalid_argument(fmt::format("{}: \"{}\": a quoted value needs a key (key=\"...\")", kind, item.key));
    }
    const DeviceKey* key = find_key(keys, item.key);
    if (key == nullptr) {
      return invalid_argument(fmt::format("{}: unknown key '{}' (known: {})", kind, item.key,
                                          keys.empty() ? std::string("none") : key_list(keys)));
    }
    if (item.bare && !key->flag) {
      return invalid_argument(fmt::format("{}: {} needs a value ({}=...)", kind, item.key, item.key));
    }
    item.key = std::string(key->key);  // an alias is its key from here on
    for (size_t j = 0; j < i; ++j) {
      if ((*items)[j].key == item.key) return invalid_argument(fmt::format("{}: {} is given twice", kind, item.key));
    }
  }
  return DeviceOptions(std::string(kind), std::move(items).value());
}

std::optional<std::string> DeviceOptions::text(std::string_view key) const {
  for (const KeyValue& item : items_) {
    if (item.key == key) return item.value;
  }
  return std::nullopt;
}

Result<bool> DeviceOptions::flag(std::string_view key, bool fallback) const {
  const std::optional<std::string> value = text(key);
  if (!value) return fallback;
  if (*value == "true" || *value == "yes" || *value == "on" || *value == "1") return true;
  if (*value == "false" || *value == "no" || *value == "off" || *value == "0") return false;
  return invalid(fmt::format("{} must be true or false, not '{}'", key, *value));
}

Result<uint64_t> DeviceOptions::number(std::string_view key, uint64_t minimum, uint64_t maximum,
                                       uint64_t fallback) const {
  const std::optional<std::string> value = text(key);
  if (!value) return fallback;
  // crosvm's serde_keyvalue: decimal, or hex, octal and binary after 0x, 0o and 0b.
  std::string_view digits(*value);
  int base = 10;
  for (const auto& [prefix, radix] : {std::pair{"0x", 16}, std::pair{"0o", 8}, std::pair{"0b", 2}}) {
    if (digits.starts_with(prefix)) {
      digits.remove_prefix(2);
      base = radix;
    }
  }
  uint64_t number = 0;
  const char* end = digits.data() + digits.size();
  auto [stop, error] = std::from_chars(digits.data(), end, number, base);
  if (digits.empty() || error != std::errc() || stop != end || number < minimum || number > maximum) {
    return invalid(fmt::format("{} must be a number from {} to {}, not '{}'", key, minimum, maximum, *value));
  }
  return number;
}

void DeviceOptions::set(std::string_view key, std::string value) {
  for (KeyValue& item : items_) {
    if (item.key == key) {
      item.value = std::move(value);
      item.bare = false;
      return;
    }
  }
  items_.push_back({std::string(key), std::move(value), false});
}

Error DeviceOptions::invalid(std::string_view message) const {
  return invalid_argument(fmt::format("{}: {}", kind_, message));
}

}  // namespace crosvm
