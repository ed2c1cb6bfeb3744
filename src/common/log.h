#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace kedge {

/// Sets up the process-wide structured logger (one line per event, to stderr).
/// `level` is one of trace, debug, info, warn, error. Call once, before threads start.
void init_logging(std::string_view level);

}  // namespace kedge
