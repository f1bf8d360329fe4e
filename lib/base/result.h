// Errors as values: every path a guest or a user can trigger returns a
// Result<T> instead of throwing. The ErrorCode mirrors the C ABI's
// crosvm_error so the capi layer maps one to the other without a table of
// special cases.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace crosvm {

enum class ErrorCode {
  kInvalidArgument = -1,
  kKvmUnavailable = -2,   // no /dev/kvm, or not permitted to open it
  kKvmCapability = -3,    // KVM lacks something this VMM needs
  kKernel = -4,           // the kernel image is missing or not usable
  kInitrd = -5,
  kMemory = -6,           // guest memory cannot be laid out or mapped
  kVcpu = -7,
  kIo = -8,               // a host file or socket failed
  kState = -9,            // the call does not fit the VM's current state
  kTimeout = -10,
  kDevice = -11,
  kProtocol = -12,        // a malformed message (control socket)
  kInternal = -99,
};

struct Error {
  ErrorCode code;
  std::string message;
};

template <typename... Args>
Error make_error(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  return Error{code, fmt::format(format, std::forward<Args>(args)...)};
}

// An Error whose message ends with strerror(errno_value).
template <typename... Args>
Error make_errno_error(ErrorCode code, int errno_value, fmt::format_string<Args...> format,
                       Args&&... args) {
  return Error{code, fmt::format(format, std::forward<Args>(args)...) + ": " +
                         std::strerror(errno_value)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  const Error& error() const { return std::get<1>(state_); }
  Error&& take_error() { return std::get<1>(std::move(state_)); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  void value() const {}
  const Error& error() const { return error_; }
  Error&& take_error() { return std::move(error_); }

 private:
  Error error_{ErrorCode::kInternal, {}};
  bool failed_ = false;
};

inline Result<void> ok() { return {}; }

}  // namespace crosvm

// Evaluates a Result-returning expression; on failure returns its error from
// the enclosing function, otherwise yields the value (GNU statement
// expression, supported by GCC and clang).
#define CROSVM_TRY(expr)                                   \
  ({                                                       \
    auto crosvm_try_result_ = (expr);                      \
    if (!crosvm_try_result_) {                             \
      return crosvm_try_result_.take_error();              \
    }                                                      \
    std::move(crosvm_try_result_).value();                 \
  })
