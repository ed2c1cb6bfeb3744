#pragma once

#include "http1/parser.h"
#include "http2/server_codec.h"
#include "proxy/deadline.h"
#include "proxy/worker_context.h"

#include <boost/asio/awaitable.hpp>
#include <boost/container/small_vector.hpp>

#include <optional>
#include <string_view>
#include <vector>

namespace kedge::proxy {

/// One request's way to the endpoints of a route's cluster, over HTTP/1.1 or HTTP/2, plain or
/// TLS (the route's backend protocol): picks
/// an endpoint, connects (or takes a pooled connection), sends the request head and reads the
/// response head. When an attempt fails in a way that is safe to repeat, the next open() tries
/// another endpoint. What lies between (the request body) and after (the response body) belongs
/// to the caller, which knows the downstream protocol. Every wait is bounded by `deadline`;
/// once it is abandoned (the client left), the attempt ends and none follows, and nothing is
/// held against the endpoint or the pool.
/// Thread: owning worker only. Owner: the request's coroutine.
class UpstreamExchange {
 public:
  enum class Head {
    Final,    // response().head() is the final response head
    Interim,  // a 1xx other than 101: pass it on if wanted, then read_head() again
    Retry,    // this attempt failed safely: open() tries another endpoint
    Failed,   // no answer to forward: reply failure_status()
  };

  UpstreamExchange(WorkerContext& ctx, const model::Route& route, Deadline& deadline,
                   std::string_view method, bool head_request, bool has_body);
  ~UpstreamExchange();
  UpstreamExchange(const UpstreamExchange&) = delete;
  UpstreamExchange& operator=(const UpstreamExchange&) = delete;

  /// Starts the next attempt: an endpoint not tried yet, connected, with `head` sent. False when
  /// no attempt is left; failure_status() then says what to answer (502, 503 or 504).
  boost::asio::awaitable<bool> open(std::string_view head);
  /// For HTTP/2 backends: the next attempt, with the request submitted on the connection's
  /// session (connection().h2) and its head sent.
  boost::asio::awaitable<bool> open_h2(const std::vector<http2::Header>& headers, bool has_body);
  /// Request body bytes, framed as announced in the head. After the first, no retry.
  boost::asio::awaitable<bool> write(std::string_view bytes);
  boost::asio::awaitable<Head> read_head();
  /// More response bytes into connection().in; false at the end of the stream or on an error
  /// (eof() tells which; a timeout is neither).
  boost::asio::awaitable<bool> read_more();
  /// More response bytes into `buffer` (not empty), for a body that goes on past what
  /// connection().in held: how many, or 0 at the end of the stream or on an error (eof() tells
  /// which, as for read_more()).
  boost::asio::awaitable<size_t> read_into(boost::asio::mutable_buffer buffer);
  bool eof() const { return eof_; }
  /// The response is complete and the connection may serve another request: pool it.
  void release();
  /// Passive health check of this attempt's endpoint: a response head came (true), or no valid
  /// one did (false; not held against the endpoint on a pooled connection, which may just have
  /// gone stale). read_head() reports itself; HTTP/2 backends' callers report.
  void report(bool answered);

  upstream::Connection& connection() { return *conn_; }
  http1::Parser& response() { return *conn_->response; }
  int failure_status() const { return failure_status_; }
  Millis read_timeout() const { return read_timeout_; }

 private:
  using Clock = std::chrono::steady_clock;
  /// The next attempt's endpoint and connection: a pooled one, or one it connects.
  boost::asio::awaitable<bool> acquire();
  /// The same, without suspending, when the endpoint picked has an idle pooled connection (the
  /// usual case: a coroutine less per request). Otherwise the pick waits for acquire().
  bool acquire_pooled();
  /// Counts an attempt, picks an untried endpoint and takes its idle connection if it has one.
  const model::Endpoint* pick_next();
  void start_attempt(const model::Endpoint& endpoint);
  boost::asio::awaitable<bool> connect(const model::Endpoint& endpoint);
  boost::asio::awaitable<bool> send_head(std::string_view head);
  /// The end of sending a head: true if it went; otherwise the attempt ends.
  bool head_sent(boost::system::error_code ec);
  /// One read into `buffer` under the read timeout: false at the end or on an error.
  boost::asio::awaitable<bool> read(boost::asio::mutable_buffer buffer, size_t& n);
  void end_attempt();
  /// This attempt's pooled connection turned out closed: try again without holding it against
  /// the endpoint.
  void forget_stale();

  WorkerContext& ctx_;
  const model::Route& route_;
  Deadline& deadline_;
  const bool idempotent_;
  const bool head_request_;
  const bool has_body_;
  Millis connect_timeout_, send_timeout_, read_timeout_;
  boost::container::small_vector<const model::Endpoint*, 4> tried_;
  const model::Endpoint* endpoint_ = nullptr;  // of the attempt in progress
  const model::Endpoint* picked_ = nullptr;    // by acquire_pooled(), for acquire() to connect
  upstream::ConnectionPtr conn_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool reused_ = false;
  bool body_sent_ = false;
  bool got_bytes_ = false;  // of a response, in this attempt
  bool interim_ = false;    // read_head() returned Interim
  bool eof_ = false;
  int attempts_ = 0;
  int failure_status_ = 502;
};

}  // namespace kedge::proxy
