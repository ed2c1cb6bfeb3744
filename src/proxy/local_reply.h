#pragma once

#include <string>
#include <string_view>

namespace kedge::proxy {

/// The one place that turns a status kedge answers by itself into bytes on the wire.
/// `close` adds `Connection: close`. `request_id` is echoed as X-Request-ID when not empty.
std::string local_reply(int status, bool close, std::string_view request_id = {},
                        bool head_only = false);

std::string_view reason_phrase(int status);

}  // namespace kedge::proxy
