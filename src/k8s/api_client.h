#pragma once

#include "common/result.h"
#include "k8s/json_text.h"
#include "k8s/kubeconfig.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace kedge::k8s {

struct ApiResponse {
  int status = 0;
  std::string body;
  /// The body as JSON (discarded value when it is not JSON).
  nlohmann::json json() const { return parse_json(body); }
};

/// An HTTPS client for the Kubernetes API server (Boost.Beast over Asio and OpenSSL): bearer
/// token (re-read from its file on every request, so a rotated service-account token is picked
/// up) or client certificate, server certificate checked against the configured CAs and name.
/// One connection per call; calls run as coroutines on the owner's io_context.
/// Thread: the io_context thread that runs its coroutines.
class ApiClient {
 public:
  using Millis = std::chrono::milliseconds;

  static Result<std::shared_ptr<ApiClient>> create(ClusterConfig config);

  /// One request; `target` is the path and query. A 401 makes the token be read again and the
  /// request be sent once more. Transport failures are errors; any HTTP status is a response.
  boost::asio::awaitable<Result<ApiResponse>> request(std::string method, std::string target,
                                                      std::string body = "",
                                                      std::string content_type = "application/json",
                                                      Millis timeout = Millis(30000));

  /// A streaming GET (a watch): on_data receives the (de-chunked) body bytes as they arrive and
  /// returns false to stop. Returns the HTTP status once the stream ends normally; an error when
  /// it breaks or stays silent for `idle_timeout`. A non-200 answer's body is collected in
  /// `error_body` (up to 64 KiB) instead of being passed to on_data.
  boost::asio::awaitable<Result<int>> stream(std::string target,
                                             std::function<bool(std::string_view)> on_data,
                                             Millis idle_timeout, std::string* error_body);

  const ClusterConfig& config() const { return config_; }

 private:
  explicit ApiClient(ClusterConfig config);
  std::string bearer();

  ClusterConfig config_;
  std::unique_ptr<boost::asio::ssl::context> ssl_;
  std::string token_;
};

}  // namespace kedge::k8s
