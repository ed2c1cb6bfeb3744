#pragma once

#include "common/byte_buffer.h"
#include "http1/parser.h"
#include "proxy/deadline.h"
#include "proxy/downstream_stream.h"
#include "proxy/worker_context.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace kedge::proxy {

/// One downstream HTTP/1.1 connection: reads requests, routes each on the snapshot current when
/// its head completed, forwards it to an upstream endpoint and streams the response back.
/// Bodies are streamed with their framing, never buffered whole. A watchdog enforces the
/// timeout of whatever phase the connection is in.
/// Thread: owning worker only. Owner: the coroutine frame that runs it (see serve_http).
class HttpSession {
 public:
  HttpSession(WorkerContext& ctx, DownstreamStream stream, const ListenerInfo& listener);
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;
  boost::asio::awaitable<void> run();
  /// On drain: a connection waiting for its next request closes now; others finish theirs.
  void close_if_idle();

 private:
  enum class Outcome { KeepAlive, Close };

  boost::asio::awaitable<void> serve();
  boost::asio::awaitable<Outcome> one_request();
  boost::asio::awaitable<Outcome> proxy(const model::Route& route);
  boost::asio::awaitable<Outcome> reply(int status, bool close);
  boost::asio::awaitable<bool> write_down(const char* data, size_t size);
  boost::asio::awaitable<void> tunnel(upstream::Connection& up);
  boost::asio::awaitable<void> linger();
  boost::asio::awaitable<Outcome> api_proxy(const model::SnapshotConstPtr& snapshot);
  void build_upstream_head(std::string& out, bool upgrade, bool chunked);
  void arm(Phase phase, Millis timeout) { deadline_.arm(phase, timeout); }
  bool timed_out(Phase phase) const { return deadline_.expired(phase); }

  WorkerContext& ctx_;
  std::unordered_set<HttpSession*>* sessions_;  // ctx_.sessions, which may outlive ctx_
  DownstreamStream down_;
  const ListenerInfo& listener_;
  Deadline deadline_;
  bool done_ = false;

  ByteBuffer in_;
  http1::Parser request_;
  model::SocketAddress client_;
  std::string client_ip_;
  std::string request_id_;
  std::string host_;
  std::string path_;
  std::string target_override_;  // the API proxy's rewritten target
  std::string up_head_;          // the request head as sent upstream (kept for retries)
  std::string out_;              // scratch for heads written downstream
  bool head_request_ = false;
  bool linger_ = false;  // the client may still be sending: drain its input before closing
};

/// Runs an HttpSession for an accepted socket until it closes.
boost::asio::awaitable<void> serve_http(WorkerContext& ctx, boost::asio::ip::tcp::socket socket,
                                        const ListenerInfo& listener);

/// Terminates TLS on an accepted socket (certificate by SNI from the snapshot current at
/// accept), then serves HTTP/1.1 on it until it closes.
boost::asio::awaitable<void> serve_https(WorkerContext& ctx, boost::asio::ip::tcp::socket socket,
                                         const ListenerInfo& listener);

}  // namespace kedge::proxy
