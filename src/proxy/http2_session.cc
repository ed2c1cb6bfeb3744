#include "proxy/http2_session.h"

#include "http1/parser.h"
#include "proxy/forwarding.h"
#include "proxy/local_reply.h"
#include "proxy/upstream_exchange.h"
#include "tls/server_context.h"

#include <fmt/format.h>
#include <nghttp2/nghttp2.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <charconv>
#include <optional>
#include <variant>

namespace kedge::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;
constexpr size_t kReadSize = 16 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;
constexpr size_t kBodyHighWater = 64 * 1024;  // response bytes buffered per stream

/// Runs `op`, or gives up after `timeout` (nullopt), cancelling it.
template <typename T>
asio::awaitable<std::optional<T>> timed(asio::awaitable<T> op, Millis timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto result = co_await (std::move(op) || timer.async_wait(kUseTuple));
  if (result.index() == 0) co_return std::get<0>(std::move(result));
  co_return std::nullopt;
}

/// A wake-up flag a coroutine can wait on (notify before wait is not lost).
class Signal {
 public:
  explicit Signal(const asio::any_io_executor& ex) : timer_(ex) {}
  void notify() {
    set_ = true;
    timer_.cancel();
  }
  /// False: `timeout` passed without a notify.
  asio::awaitable<bool> wait(Millis timeout) {
    if (!set_) {
      timer_.expires_after(timeout);
      co_await timer_.async_wait(kUseTuple);
    }
    bool was_set = set_;
    set_ = false;
    co_return was_set;
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

}  // namespace

struct Http2Session::Stream {
  Stream(int32_t i, const asio::any_io_executor& ex) : id(i), signal(ex), out_signal(ex) {}
  int32_t id;
  std::vector<http2::Header> headers;
  bool end_stream = false;  // the request body is complete
  std::vector<http2::Header> trailers;
  std::string body_in;   // request body received, not yet forwarded (nor consumed)
  bool discard = false;  // no longer forwarded: consume request body at once
  bool closed = false;   // the stream is gone
  bool responded = false;
  std::string body_out;  // response body for the codec to pull
  size_t out_pos = 0;
  bool out_eof = false;
  Signal signal;      // body_in grew, body_out drained, or closed
  Signal out_signal;  // body_out drained, or closed (for a reader running beside the body)
  std::vector<http2::Header> response_trailers;
  std::vector<http2::Header> up_headers;  // the request for an HTTP/2 backend
  Deadline* deadline = nullptr;           // bounds the upstream exchange while one runs
  std::string request_id;
  std::string method;
  std::string up_head;   // the request head as sent upstream (kept for retries)
  bool chunked = false;  // the request body goes upstream chunked (no content-length)
  uint64_t content_length = 0;
};

Http2Session::Http2Session(WorkerContext& ctx, DownstreamStream stream,
                           const ListenerInfo& listener)
    : ctx_(ctx),
      down_(std::move(stream)),
      listener_(listener),
      codec_(
          *this,
          http2::ServerSettings{.max_concurrent_streams = ctx.limits.http2_max_concurrent_streams,
                                .max_header_list_size = ctx.limits.http2_max_header_list_size,
                                .max_frame_size = ctx.limits.http2_max_frame_size,
                                .max_resets = ctx.limits.http2_max_resets}),
      write_signal_(down_.socket().get_executor()),
      watchdog_timer_(down_.socket().get_executor()),
      streams_done_(down_.socket().get_executor()) {
  ClientAddress client = client_address(down_.peer());
  client_ = client.address;
  client_ip_ = std::move(client.text);
  boost::system::error_code ec;
  down_.socket().set_option(tcp::no_delay(true), ec);
}

Http2Session::~Http2Session() = default;

void Http2Session::abandon_exchange(Stream& s) {
  if (s.deadline) s.deadline->abandon();
}

void Http2Session::flush() {
  write_pending_ = true;
  write_signal_.cancel();
}

asio::awaitable<void> Http2Session::run() {
  ++ctx_.stats.active_connections;
  ++ctx_.stats.accepted_connections;
  idle_since_ = Clock::now();
  flush();  // the server SETTINGS
  co_await (reader() && writer() && watchdog());
  // Streams still running end now: their client is gone.
  for (auto& [id, s] : streams_) {
    s->closed = true;
    abandon_exchange(*s);
    s->signal.notify();
    s->out_signal.notify();
  }
  while (running_ > 0) {
    streams_done_.expires_after(std::chrono::seconds(1));
    co_await streams_done_.async_wait(kUseTuple);
  }
  streams_.clear();
  boost::system::error_code ec;
  down_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (!ec) {
    // Unread input would make the close a reset that can destroy the GOAWAY: drain a while.
    char sink[4096];
    auto until = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < until) {
      auto r = co_await timed(down_.socket().async_read_some(asio::buffer(sink), kUseTuple),
                              std::chrono::duration_cast<Millis>(until - Clock::now()));
      if (!r || std::get<0>(*r)) break;
    }
  }
  down_.socket().close(ec);
  --ctx_.stats.active_connections;
}

asio::awaitable<void> Http2Session::reader() {
  std::vector<uint8_t> buf(kReadSize);
  while (true) {
    auto [ec, n] = co_await down_.read_some(asio::buffer(buf));
    if (ec) break;
    bool ok = codec_.feed(buf.data(), n);
    flush();
    if (!ok) {
      if (codec_.enhance_your_calm())
        spdlog::debug("{}: HTTP/2 flood or rapid reset: GOAWAY", client_ip_);
      break;
    }
    if (!codec_.want_read()) break;
  }
  reader_done_ = true;
  flush();
}

asio::awaitable<void> Http2Session::writer() {
  std::string out;
  while (true) {
    out.clear();
    write_pending_ = false;
    if (!codec_.drain(out, kWriteBatch)) break;
    if (!out.empty()) {
      writing_ = true;
      write_started_ = Clock::now();
      auto [ec, n] = co_await down_.write(asio::buffer(out));
      writing_ = false;
      if (ec) break;
      continue;
    }
    if (reader_done_ || (!codec_.want_read() && !codec_.want_write())) break;
    if (!write_pending_) {
      write_signal_.expires_at(Clock::time_point::max());
      co_await write_signal_.async_wait(kUseTuple);
    }
  }
  done_ = true;
  watchdog_timer_.cancel();
  down_.cancel();  // ends the reader
}

asio::awaitable<void> Http2Session::watchdog() {
  while (!done_) {
    watchdog_timer_.expires_after(std::chrono::seconds(1));
    co_await watchdog_timer_.async_wait(kUseTuple);
    if (done_) break;
    auto now = Clock::now();
    if (writing_ && now - write_started_ > ctx_.limits.client_body_timeout) {
      down_.cancel();  // the client stopped reading
      continue;
    }
    if (streams_.empty() && !goaway_sent_ &&
        (ctx_.draining || now - idle_since_ > ctx_.limits.keepalive_timeout)) {
      goaway_sent_ = true;
      codec_.goaway(NGHTTP2_NO_ERROR);
      flush();
    } else if (ctx_.draining && !goaway_sent_) {
      goaway_sent_ = true;  // streams in flight finish; no new ones
      codec_.goaway(NGHTTP2_NO_ERROR);
      flush();
    }
  }
}

void Http2Session::on_request(int32_t id, std::vector<http2::Header> headers, bool end_stream) {
  auto s = std::make_shared<Stream>(id, down_.socket().get_executor());
  s->headers = std::move(headers);
  s->end_stream = end_stream;
  streams_[id] = s;
  ++running_;
  asio::co_spawn(down_.socket().get_executor(), handle(std::move(s)), asio::detached);
}

void Http2Session::on_data(int32_t id, const uint8_t* data, size_t size) {
  auto it = streams_.find(id);
  if (it == streams_.end() || it->second->discard) {
    codec_.consume(id, size);
    return;
  }
  it->second->body_in.append(reinterpret_cast<const char*>(data), size);
  it->second->signal.notify();
}

void Http2Session::on_request_end(int32_t id, std::vector<http2::Header> trailers) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second->end_stream = true;
  it->second->trailers = std::move(trailers);
  it->second->signal.notify();
}

void Http2Session::on_stream_close(int32_t id, uint32_t) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = *it->second;
  s.closed = true;
  if (!s.body_in.empty()) codec_.consume(id, s.body_in.size());
  s.body_in.clear();
  abandon_exchange(s);
  s.signal.notify();
  s.out_signal.notify();
  streams_.erase(it);
  if (streams_.empty()) idle_since_ = Clock::now();
}

std::string_view Http2Session::body(int32_t id, size_t max, bool& eof) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    eof = true;
    return {};
  }
  const Stream& s = *it->second;
  size_t n = std::min(max, s.body_out.size() - s.out_pos);
  eof = s.out_eof && s.out_pos + n == s.body_out.size();
  return {s.body_out.data() + s.out_pos, n};
}

void Http2Session::body_sent(int32_t id, size_t size) {
  auto it = streams_.find(id);
  if (it == streams_.end() || size == 0) return;
  Stream& s = *it->second;
  s.out_pos += size;
  if (s.out_pos == s.body_out.size()) {
    s.body_out.clear();
    s.out_pos = 0;
  }
  s.signal.notify();
  s.out_signal.notify();
}

const std::vector<http2::Header>* Http2Session::response_trailers(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : &it->second->response_trailers;
}

void Http2Session::discard_body(Stream& s) {
  s.discard = true;
  if (!s.body_in.empty() && !s.closed) codec_.consume(s.id, s.body_in.size());
  s.body_in.clear();
}

void Http2Session::respond(Stream& s, int status, std::vector<http2::Header> headers,
                           std::string body) {
  if (s.closed || s.responded) return;
  s.responded = true;
  discard_body(s);
  headers.push_back({"content-length", std::to_string(body.size())});
  if (!s.request_id.empty()) headers.push_back({"x-request-id", s.request_id});
  if (s.method == "HEAD") body.clear();
  s.body_out = std::move(body);
  s.out_pos = 0;
  s.out_eof = true;
  codec_.submit_response(s.id, status, headers, !s.body_out.empty());
  flush();
}

void Http2Session::local(Stream& s, int status, const std::string& stats_key) {
  if (stats_key.empty())
    ctx_.stats.unrouted[status]++;
  else
    ctx_.stats.requests[stats_key].by_status[status]++;
  respond(s, status, {{"server", "kedge"}, {"content-type", "text/plain; charset=utf-8"}},
          fmt::format("{} {}\n", status, reason_phrase(status)));
}

asio::awaitable<void> Http2Session::handle(StreamPtr sp) {
  Stream& s = *sp;
  struct Done {
    Http2Session& self;
    ~Done() {
      if (--self.running_ == 0) self.streams_done_.cancel();
    }
  } done{*this};

  std::string_view method, scheme, authority, path, host_field;
  bool found_host = false;
  for (auto& h : s.headers) {
    std::string_view name = h.name;  // compared by length first, not through strlen
    if (name == ":method")
      method = h.value;
    else if (name == ":scheme")
      scheme = h.value;
    else if (name == ":authority")
      authority = h.value;
    else if (name == ":path")
      path = h.value;
    else if (name == "host" && !found_host) {
      host_field = h.value;
      found_host = true;
    } else if (name == "x-request-id" && !h.value.empty() && h.value.size() <= 128) {
      s.request_id = h.value;
    }
  }
  if (s.request_id.empty()) make_request_id(ctx_.rng, s.request_id);
  s.method = method;
  if (method == "CONNECT") co_return local(s, 405);
  if (authority.empty()) authority = host_field;
  // Streams of one connection mostly name the same authority and path: see RouteMemo.
  const bool memo = memo_.hit(ctx_.snapshot_epoch, authority, path);
  std::string norm_path;
  if (!memo) {
    memo_.valid = false;
    if (!model::normalize_host(authority, memo_.host) || !model::normalize_path(path, norm_path))
      co_return local(s, 400);
  }
  // Read only before this stream first suspends (at proxy() below): other streams of the
  // connection may refill the memo after that.
  const std::string_view host = memo_.host;

  model::SnapshotConstPtr snapshot = ctx_.snapshot;  // this request keeps its snapshot
  if (!listener_.api_proxy_token.empty()) co_return local(s, 404);
  const model::Route* route = memo_.route;
  if (!memo) {
    route = snapshot ? snapshot->route(host, norm_path) : nullptr;
    memo_.store(ctx_.snapshot_epoch, authority, path, route);
  }
  if (down_.is_tls() && !down_.server_name().empty() && host != down_.server_name()) {
    const tls::ServerContext* cert =
        down_.handshake_snapshot()->certificate_for(down_.server_name());
    if (!cert || !cert->covers(host)) co_return local(s, 421);
  }
  if (!route) co_return local(s, 404);
  if (route->ssl_redirect && !down_.is_tls() && listener_.https_port != 0) {
    std::string location = listener_.https_port == 443
                               ? fmt::format("https://{}{}", host, path)
                               : fmt::format("https://{}:{}{}", host, listener_.https_port, path);
    ctx_.stats.requests[route->stats_key].by_status[308]++;
    respond(s, 308,
            {{"server", "kedge"},
             {"location", location},
             {"content-type", "text/plain; charset=utf-8"}},
            "308 Permanent Redirect\n");
    co_return;
  }
  ClientLimiter::Hold hold;  // this stream's place among its client's requests in flight
  if (route->options.client_limits) {
    int status = admit(ctx_.client_limiter, *route->options.client_limits, client_,
                       ctx_.limits.limit_req_status, ctx_.limits.limit_conn_status, hold);
    if (status != 0) co_return local(s, status, route->stats_key);
  }
  // The upstream request head: the client's fields but the hop's own and the forwarding ones,
  // Cookie fields joined (RFC 9113 §8.2.3). HTTP/2 has no Connection field (nghttp2 refuses
  // one), so no other field is named hop-by-hop by one.
  std::string up_head;
  up_head.reserve(512);
  up_head.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: ");
  up_head.append(found_host ? host_field : authority).append("\r\n");
  std::string cookies;
  std::string_view length;
  bool has_length = false;
  for (auto& h : s.headers) {
    std::string_view name = h.name;
    if (name.starts_with(':') || name == "host") continue;
    if (name == "cookie") {
      if (!cookies.empty()) cookies.append("; ");
      cookies.append(h.value);
      continue;
    }
    if (name == "content-length" && !has_length) {
      has_length = true;
      length = h.value;
    }
    if (is_hop_by_hop(name) || is_forwarding_header(name)) continue;
    up_head.append(name).append(": ").append(h.value).append("\r\n");
  }
  if (!cookies.empty()) up_head.append("cookie: ").append(cookies).append("\r\n");
  const bool chunked = !s.end_stream && !has_length;
  if (chunked) up_head.append("Transfer-Encoding: chunked\r\n");
  append_forwarding_fields(up_head, s.request_id, client_ip_, authority, listener_.port,
                           listener_.scheme);
  if (model::is_http2(route->options.protocol)) {
    // HTTP/2 on both sides: the fields go as they came (with `te: trailers`, which gRPC needs).
    auto& h = s.up_headers;
    h.push_back({":method", std::string(method)});
    h.push_back(
        {":scheme", route->options.protocol == model::UpstreamProtocol::Grpcs ? "https" : "http"});
    h.push_back({":authority", std::string(found_host ? host_field : authority)});
    h.push_back({":path", std::string(path)});
    for (auto& f : s.headers) {
      if (f.name.starts_with(':') || f.name == "host" || is_forwarding_header(f.name)) continue;
      if (is_hop_by_hop(f.name) && !(f.name == "te" && f.value == "trailers")) continue;
      h.push_back(f);
    }
    h.push_back({"x-request-id", s.request_id});
    h.push_back({"x-real-ip", client_ip_});
    h.push_back({"x-forwarded-for", client_ip_});
    h.push_back({"x-forwarded-host", std::string(authority)});
    h.push_back({"x-forwarded-port", std::to_string(listener_.port)});
    h.push_back({"x-forwarded-proto", listener_.scheme});
    h.push_back({"x-scheme", listener_.scheme});
  }
  std::from_chars(length.data(), length.data() + length.size(), s.content_length);
  s.up_head = std::move(up_head);
  s.chunked = chunked;
  s.headers.clear();
  co_await proxy(s, *route);
}

asio::awaitable<void> Http2Session::proxy(Stream& s, const model::Route& route) {
  const Limits& limits = ctx_.limits;
  const int64_t max_body =
      route.options.max_body_bytes >= 0 ? route.options.max_body_bytes : limits.max_body_bytes;
  if (route.cluster->endpoints.empty()) co_return local(s, 503, route.stats_key);
  if (max_body > 0 && s.content_length > static_cast<uint64_t>(max_body))
    co_return local(s, 413, route.stats_key);
  Deadline deadline(ctx_.deadlines, nullptr);
  s.deadline = &deadline;
  deadline.start();
  if (model::is_http2(route.options.protocol))
    co_await exchange_h2(s, route, deadline, max_body);
  else
    co_await exchange(s, route, deadline, max_body);
  deadline.stop();
  s.deadline = nullptr;
}

asio::awaitable<void> Http2Session::exchange(Stream& s, const model::Route& route,
                                             Deadline& deadline, int64_t max_body) {
  auto& stats = ctx_.stats.requests[route.stats_key];
  const bool head_request = s.method == "HEAD";
  const bool chunked = s.chunked;
  const Limits& limits = ctx_.limits;

  UpstreamExchange exchange(ctx_, route, deadline, s.method, head_request,
                            !s.end_stream || !s.body_in.empty());
  bool request_complete = false;
  bool answered = false;
  while (!answered && !s.closed) {
    // (g++ 12 miscompiles a co_await in a short-circuit operand: keep it a statement.)
    bool opened = co_await exchange.open(s.up_head);
    if (!opened) break;
    // Stream the request body as DATA arrives; its window opens as it is forwarded.
    request_complete = s.end_stream && s.body_in.empty() && !chunked;
    uint64_t body_bytes = 0;
    while (!request_complete) {
      if (!s.body_in.empty()) {
        std::string chunk = std::move(s.body_in);
        s.body_in.clear();
        body_bytes += chunk.size();
        if (max_body > 0 && body_bytes > static_cast<uint64_t>(max_body)) {
          codec_.consume(s.id, chunk.size());
          co_return local(s, 413, route.stats_key);
        }
        bool ok = true;
        if (chunked) ok = co_await exchange.write(fmt::format("{:x}\r\n", chunk.size()));
        if (ok) ok = co_await exchange.write(chunk);
        if (ok && chunked) ok = co_await exchange.write("\r\n");
        if (s.closed) co_return;
        codec_.consume(s.id, chunk.size());
        flush();
        if (!ok) break;  // the upstream may still have answered: read it
        continue;
      }
      if (s.end_stream) {
        if (chunked) {
          std::string last = "0\r\n";
          for (auto& t : s.trailers) {
            if (t.name.starts_with(':') || is_hop_by_hop(t.name)) continue;
            last.append(t.name).append(": ").append(t.value).append("\r\n");
          }
          last.append("\r\n");
          if (!co_await exchange.write(last) && s.closed) co_return;
        }
        request_complete = true;
        break;
      }
      if (s.closed) co_return;
      if (!co_await s.signal.wait(limits.client_body_timeout) && !s.closed && s.body_in.empty() &&
          !s.end_stream)
        co_return local(s, 408, route.stats_key);
      if (s.closed) co_return;
    }
    if (!request_complete) discard_body(s);

    // The response head (interim 1xx answers are dropped).
    UpstreamExchange::Head result;
    do result = co_await exchange.read_head();
    while (result == UpstreamExchange::Head::Interim && !s.closed);
    if (s.closed) co_return;
    if (result == UpstreamExchange::Head::Failed)
      co_return local(s, exchange.failure_status(), route.stats_key);
    answered = result == UpstreamExchange::Head::Final;
  }
  if (s.closed) co_return;
  if (!answered) co_return local(s, exchange.failure_status(), route.stats_key);

  http1::Parser& response = exchange.response();
  ByteBuffer& up_in = exchange.connection().in;
  const http1::MessageHead& rh = response.head();
  const int status = rh.status;
  stats.by_status[status]++;
  // The fields as they lie in the response head: the codec copies them, lowering the names.
  fields_.clear();
  const EndToEnd end_to_end(rh);
  for (size_t i = 0; i < rh.size(); ++i) {
    std::string_view name = rh.name(i);
    if (end_to_end.keeps(name)) fields_.push_back({name, rh.value(i)});
  }
  if (!listener_.hsts.empty() && down_.is_tls() && !rh.count("strict-transport-security"))
    fields_.push_back({"strict-transport-security", listener_.hsts});
  const bool until_close = response.body_until_close();
  const bool no_body =
      head_request || status == 204 || status == 304 ||
      (!response.chunked() && !until_close && response.content_length().value_or(0) == 0);
  s.responded = true;
  codec_.submit_response(s.id, status, fields_, !no_body);
  flush();

  response.resume();
  bool complete = false;
  while (true) {
    auto step = response.execute(up_in.data(), up_in.size());
    if (step.event == http1::Parser::Event::Error) break;
    if (step.consumed > 0) {
      for (auto span : response.body_spans()) s.body_out.append(span.data, span.size);
      up_in.consume(step.consumed);
      codec_.resume(s.id);
      flush();
    }
    if (step.event == http1::Parser::Event::MessageComplete) {
      complete = true;
      break;
    }
    // Read on only once the client has taken most of what waits; a client that stops
    // reading for the client body timeout loses the stream.
    bool stalled = false;
    while (!s.closed && !stalled && s.body_out.size() - s.out_pos > kBodyHighWater)
      stalled = !co_await s.signal.wait(limits.client_body_timeout);
    if (s.closed || stalled) break;
    bool more = co_await exchange.read_more();
    if (s.closed) break;
    if (!more) {
      if (exchange.eof() && until_close)
        complete = response.finish().event == http1::Parser::Event::MessageComplete;
      break;
    }
  }
  if (s.closed) co_return;
  if (!complete) {
    codec_.reset(s.id, NGHTTP2_INTERNAL_ERROR);  // truncated: the client must see the cut
    flush();
    co_return;
  }
  s.out_eof = true;
  if (!no_body) codec_.resume(s.id);
  flush();
  if (request_complete && response.keep_alive() && !until_close && up_in.empty())
    exchange.release();
}

asio::awaitable<void> Http2Session::exchange_h2(Stream& s, const model::Route& route,
                                                Deadline& deadline, int64_t max_body) {
  auto& stats = ctx_.stats.requests[route.stats_key];
  const Limits& limits = ctx_.limits;
  const bool has_body = !s.end_stream || !s.body_in.empty();
  UpstreamExchange exchange(ctx_, route, deadline, s.method, s.method == "HEAD", has_body);
  if (!co_await exchange.open_h2(s.up_headers, has_body)) {
    if (!s.closed) local(s, exchange.failure_status(), route.stats_key);
    co_return;
  }
  upstream::Connection& conn = exchange.connection();
  http2::ClientCodec& up = *conn.h2;
  http2::ClientCodec::Response& response = up.response();
  const auto started = Clock::now();
  Signal wake(conn.socket.get_executor());  // frames to send upstream
  bool finished = false;                    // the response ended or was cut, or the client left
  bool submitted = false;
  auto cut = [&](int status) {
    if (s.closed) return;  // the client left: that says nothing of the endpoint
    if (!submitted && (status == 502 || status == 504)) exchange.report(false);
    if (submitted) {
      codec_.reset(s.id, NGHTTP2_INTERNAL_ERROR);  // the client must see the cut
      flush();
    } else {
      local(s, status, route.stats_key);
    }
  };
  auto finish = [&]() {
    finished = true;
    wake.notify();
    s.signal.notify();
    conn.cancel();
  };

  // Sends what the session has to send: the request body, acknowledgements, window updates.
  auto writer = [&]() -> asio::awaitable<void> {
    std::string out;
    while (true) {
      out.clear();
      if (!up.drain(out)) break;
      if (response.reset && !finished) break;  // the backend broke the protocol
      if (!out.empty()) {
        auto [ec, n] = co_await conn.write(asio::buffer(out));
        if (ec) break;
        s.signal.notify();  // room for more request body
        continue;
      }
      if (finished) co_return;
      co_await wake.wait(Millis(24 * 3600 * 1000));
    }
    if (!finished) {
      cut(502);
      finish();
    }
  };

  // Moves the client's DATA to the backend as it arrives, then its trailers.
  auto body_pump = [&]() -> asio::awaitable<void> {
    uint64_t body_bytes = 0;
    bool ended = s.end_stream && s.body_in.empty();
    while (!ended && !finished && !s.closed) {
      if (!s.body_in.empty() && up.pending_body() < kBodyHighWater) {
        body_bytes += s.body_in.size();
        if (max_body > 0 && body_bytes > static_cast<uint64_t>(max_body)) {
          up.reset_stream(NGHTTP2_CANCEL);
          cut(413);
          finish();
          co_return;
        }
        up.send_body(s.body_in);
        codec_.consume(s.id, s.body_in.size());
        s.body_in.clear();
        flush();
        wake.notify();
        deadline.arm(Phase::UpstreamRead, exchange.read_timeout());  // the exchange is alive
        continue;
      }
      if (s.end_stream && s.body_in.empty()) {
        std::vector<http2::Header> trailers;
        for (auto& t : s.trailers)
          if (!t.name.starts_with(':') && !is_hop_by_hop(t.name)) trailers.push_back(t);
        up.end_body(std::move(trailers));
        wake.notify();
        ended = true;
        break;
      }
      if (!co_await s.signal.wait(limits.client_body_timeout) && !finished && !s.closed &&
          s.body_in.empty() && !s.end_stream) {
        up.reset_stream(NGHTTP2_CANCEL);
        cut(408);
        finish();
      }
    }
    if (!ended) discard_body(s);
  };

  // Reads the backend's frames and passes the response on: head, DATA, trailers.
  auto reader = [&]() -> asio::awaitable<void> {
    while (!finished) {
      deadline.arm(Phase::UpstreamRead, exchange.read_timeout());
      auto [ec, n] = co_await conn.read_some(free_space(conn.in));
      if (ec || s.closed) {
        if (!finished) cut(deadline.expired(Phase::UpstreamRead) ? 504 : 502);
        break;
      }
      conn.in.commit(n);
      bool ok = up.feed(reinterpret_cast<const uint8_t*>(conn.in.data()), conn.in.size());
      conn.in.consume(conn.in.size());
      wake.notify();
      if (response.head && !submitted) {
        submitted = true;
        exchange.report(true);
        s.responded = true;
        stats.by_status[response.status]++;
        ctx_.stats.observe_latency(std::chrono::duration<double>(Clock::now() - started).count());
        std::vector<http2::Header> headers;
        for (auto& h : response.headers)
          if (!is_hop_by_hop(h.name)) headers.push_back(std::move(h));
        if (!listener_.hsts.empty() && down_.is_tls())
          headers.push_back({"strict-transport-security", listener_.hsts});
        bool body_follows = !response.end || !response.body.empty() || !response.trailers.empty();
        codec_.submit_response(s.id, response.status, headers, body_follows && s.method != "HEAD");
      }
      if (!response.body.empty() && submitted) {
        s.body_out.append(response.body);
        response.body.clear();
        codec_.resume(s.id);
      }
      if (response.end) {
        for (auto& t : response.trailers)
          if (!is_hop_by_hop(t.name)) s.response_trailers.push_back(std::move(t));
        s.out_eof = true;
        codec_.resume(s.id);
        flush();
        break;
      }
      flush();
      if (!ok || response.reset) {
        cut(502);
        break;
      }
      // Read on only once the client has taken most of what waits.
      while (!s.closed && s.body_out.size() - s.out_pos > kBodyHighWater) {
        if (!co_await s.out_signal.wait(limits.client_body_timeout)) {
          up.reset_stream(NGHTTP2_CANCEL);
          cut(502);
          break;
        }
      }
    }
    finished = true;
    wake.notify();
    s.signal.notify();
  };

  co_await (reader() && writer() && body_pump());
  if (response.end && up.reusable() && conn.in.empty()) exchange.release();
}

asio::awaitable<void> serve_http2(WorkerContext& ctx, DownstreamStream stream,
                                  const ListenerInfo& listener) {
  Http2Session session(ctx, std::move(stream), listener);
  co_await session.run();
}

}  // namespace kedge::proxy
