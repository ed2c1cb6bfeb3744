#pragma once

#include <expected>
#include <string>
#include <utility>

namespace kedge {

/// A control-plane error: a human-readable reason. The data plane uses its own small error codes.
/// Thread: any. Owner: value type.
struct Error {
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = Result<void>;

inline std::unexpected<Error> fail(std::string message) {
  return std::unexpected<Error>(Error{std::move(message)});
}

}  // namespace kedge
