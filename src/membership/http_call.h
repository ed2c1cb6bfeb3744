#pragma once

#include "common/result.h"

#include <chrono>
#include <string>

namespace kedge::membership {

struct ApiReply {
  int status = 0;
  std::string body;
};

/// One plain-HTTP request to an API server ("http://host:port"), Connection: close, bounded by
/// `timeout` as a whole; `token` (optional) goes in a Bearer Authorization header.
/// Thread: any (blocking).
Result<ApiReply> http_call(const std::string& host, uint16_t port, const std::string& method,
                           const std::string& target, const std::string& body,
                           const std::string& token, std::chrono::milliseconds timeout);

/// Splits "http://host:port" (port default 80); fails on anything else.
Result<std::pair<std::string, uint16_t>> parse_http_url(const std::string& url);

}  // namespace kedge::membership
