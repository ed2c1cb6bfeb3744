#pragma once

#include "common/byte_buffer.h"
#include "http1/parser.h"
#include "proxy/deadline.h"
#include "proxy/downstream_stream.h"
#include "proxy/route_memo.h"
#include "proxy/worker_context.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <optional>

namespace kedge::proxy {

class UpstreamExchange;

/// One downstream HTTP/1.1 connection: reads requests, routes each on the snapshot current when
/// its head completed, forwards it to an upstream endpoint and streams the response back.
/// Bodies are streamed with their framing, never buffered whole. A watchdog enforces the
/// timeout of whatever phase the connection is in.
/// Thread: owning worker only. Owner: the coroutine frame that runs it (see serve_http).
class HttpSession {
 public:
  HttpSession(WorkerContext& ctx, DownstreamStream stream, const ListenerInfo& listener,
              bool h2c = false);
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;
  boost::asio::awaitable<void> run();
  /// After run(): the connection, with the bytes read so far, if its client opened with the
  /// HTTP/2 preface (only looked for when `h2c` was set); then it is the caller's to serve.
  std::optional<DownstreamStream> take_http2();
  /// On drain: a connection waiting for its next request closes now; others finish theirs.
  void close_if_idle();

 private:
  enum class Outcome { KeepAlive, Close, Http2 };

  boost::asio::awaitable<void> serve();
  boost::asio::awaitable<Outcome> one_request();
  boost::asio::awaitable<Outcome> proxy(const model::Route& route);
  boost::asio::awaitable<Outcome> reply(int status, bool close);
  boost::asio::awaitable<bool> write_down(const char* data, size_t size);
  /// The rest of a response body, once the bytes read with its head are gone: read and written
  /// through a buffer the worker lends, as it came (framing kept). Whether the body completed;
  /// `extra`: the upstream sent bytes past the response.
  boost::asio::awaitable<bool> stream_body(UpstreamExchange& exchange, http1::Parser& response,
                                           bool until_close, bool& extra);
  boost::asio::awaitable<void> tunnel(upstream::Connection& up);
  boost::asio::awaitable<void> linger();
  boost::asio::awaitable<Outcome> api_proxy(const model::SnapshotConstPtr& snapshot);
  void build_upstream_head(std::string& out, bool upgrade, bool chunked);
  /// Sets TCP_NODELAY on the client connection: before its second write (nginx sets it when a
  /// connection turns keep-alive), at once over TLS or for a tunnel.
  void no_delay();
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
  std::string path_;
  RouteMemo memo_;               // its host, and path_, are the normalised authority and target
  std::string target_override_;  // the API proxy's rewritten target
  std::string up_head_;          // the request head as sent upstream (kept for retries)
  std::string out_;              // scratch for heads written downstream
  bool head_request_ = false;
  bool wrote_ = false;     // to the client: the next write sets TCP_NODELAY first
  bool no_delay_ = false;  // TCP_NODELAY is set
  bool linger_ = false;    // the client may still be sending: drain its input before closing
  bool h2c_ = false;       // the first bytes are still to be checked for the HTTP/2 preface
  bool http2_ = false;     // they were: the connection goes to take_http2()
};

/// Runs an HttpSession for an accepted socket until it closes, or an Http2Session if the client
/// opens with the HTTP/2 preface (h2c with prior knowledge).
boost::asio::awaitable<void> serve_http(WorkerContext& ctx, boost::asio::ip::tcp::socket socket,
                                        boost::asio::ip::tcp::endpoint peer,
                                        const ListenerInfo& listener);

/// Terminates TLS on an accepted socket (certificate by SNI from the snapshot current at
/// accept), then serves HTTP/1.1 on it until it closes.
boost::asio::awaitable<void> serve_https(WorkerContext& ctx, boost::asio::ip::tcp::socket socket,
                                         boost::asio::ip::tcp::endpoint peer,
                                         const ListenerInfo& listener);

}  // namespace kedge::proxy
