#pragma once

#include "http1/message_head.h"
#include "http2/server_codec.h"
#include "proxy/deadline.h"
#include "proxy/downstream_stream.h"
#include "proxy/route_memo.h"
#include "proxy/worker_context.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <unordered_map>

namespace kedge::proxy {

/// One downstream HTTP/2 connection (h2 by ALPN, or h2c with prior knowledge). A reader feeds
/// client bytes to the codec, a writer sends what it has to send, and every request stream runs
/// as its own coroutine: routed like an HTTP/1.1 request and proxied to the upstream over
/// HTTP/1.1. Bodies stream both ways under HTTP/2 flow control, never buffered whole.
/// Thread: owning worker only. Owner: the coroutine frame that runs it (see serve_http2).
class Http2Session final : private http2::ServerCodec::Handler {
 public:
  Http2Session(WorkerContext& ctx, DownstreamStream stream, const ListenerInfo& listener);
  ~Http2Session() override;
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;
  boost::asio::awaitable<void> run();

 private:
  struct Stream;
  using StreamPtr = std::shared_ptr<Stream>;

  // ServerCodec::Handler
  void on_request(int32_t id, std::vector<http2::Header> headers, bool end_stream) override;
  void on_data(int32_t id, const uint8_t* data, size_t size) override;
  void on_request_end(int32_t id, std::vector<http2::Header> trailers) override;
  void on_stream_close(int32_t id, uint32_t error_code) override;
  std::string_view body(int32_t id, size_t max, bool& eof) override;
  void body_sent(int32_t id, size_t size) override;
  const std::vector<http2::Header>* response_trailers(int32_t id) override;

  boost::asio::awaitable<void> reader();
  boost::asio::awaitable<void> writer();
  boost::asio::awaitable<void> watchdog();
  boost::asio::awaitable<void> handle(StreamPtr s);
  boost::asio::awaitable<void> proxy(Stream& s, const model::Route& route);
  boost::asio::awaitable<void> exchange(Stream& s, const model::Route& route, Deadline& deadline,
                                        int64_t max_body);
  boost::asio::awaitable<void> exchange_h2(Stream& s, const model::Route& route, Deadline& deadline,
                                           int64_t max_body);
  /// The stream's client is gone: its upstream exchange, if one runs, ends.
  void abandon_exchange(Stream& s);
  void local(Stream& s, int status, const std::string& stats_key = {});
  void respond(Stream& s, int status, std::vector<http2::Header> headers, std::string body);
  void discard_body(Stream& s);
  void flush();

  WorkerContext& ctx_;
  DownstreamStream down_;
  const ListenerInfo& listener_;
  http2::ServerCodec codec_;
  model::SocketAddress client_;
  std::string client_ip_;
  RouteMemo memo_;                    // shared by the connection's streams
  std::vector<http2::Field> fields_;  // a response head's fields, on their way to the codec
  std::unordered_map<int32_t, StreamPtr> streams_;
  boost::asio::steady_timer write_signal_;
  boost::asio::steady_timer watchdog_timer_;
  boost::asio::steady_timer streams_done_;
  bool write_pending_ = false;
  bool writing_ = false;
  std::chrono::steady_clock::time_point write_started_;
  std::chrono::steady_clock::time_point idle_since_;
  bool reader_done_ = false;
  bool done_ = false;
  bool goaway_sent_ = false;
  int running_ = 0;  // stream coroutines alive (they reference this session)
};

/// Serves HTTP/2 on a connection until it closes (after TLS with ALPN h2, or h2c).
boost::asio::awaitable<void> serve_http2(WorkerContext& ctx, DownstreamStream stream,
                                         const ListenerInfo& listener);

}  // namespace kedge::proxy
