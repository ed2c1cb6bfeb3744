#include "proxy/http2_session.h"

#include "http1/parser.h"
#include "proxy/forwarding.h"
#include "proxy/local_reply.h"
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
#include <cstring>
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

void lower(std::string& s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
}

}  // namespace

struct Http2Session::Stream {
  Stream(int32_t i, const asio::any_io_executor& ex) : id(i), signal(ex) {}
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
  Signal signal;  // body_in grew, body_out drained, or closed
  upstream::Connection* up = nullptr;
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
  boost::system::error_code ec;
  auto remote = down_.socket().remote_endpoint(ec);
  if (!ec) {
    auto addr = remote.address();
    client_ip_ = addr.is_v6() && addr.to_v6().is_v4_mapped()
                     ? asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6()).to_string()
                     : addr.to_string();
  }
  down_.socket().set_option(tcp::no_delay(true), ec);
}

Http2Session::~Http2Session() = default;

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
    boost::system::error_code ignored;
    if (s->up) s->up->socket.cancel(ignored);
    s->signal.notify();
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
  boost::system::error_code ignored;
  down_.socket().cancel(ignored);  // ends the reader
}

asio::awaitable<void> Http2Session::watchdog() {
  while (!done_) {
    watchdog_timer_.expires_after(std::chrono::seconds(1));
    co_await watchdog_timer_.async_wait(kUseTuple);
    if (done_) break;
    auto now = Clock::now();
    boost::system::error_code ignored;
    if (writing_ && now - write_started_ > ctx_.limits.client_body_timeout) {
      down_.socket().cancel(ignored);  // the client stopped reading
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
  boost::system::error_code ignored;
  if (s.up) s.up->socket.cancel(ignored);
  s.signal.notify();
  streams_.erase(it);
  if (streams_.empty()) idle_since_ = Clock::now();
}

size_t Http2Session::read_body(int32_t id, uint8_t* buf, size_t size, bool& eof) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    eof = true;
    return 0;
  }
  Stream& s = *it->second;
  size_t n = std::min(size, s.body_out.size() - s.out_pos);
  std::memcpy(buf, s.body_out.data() + s.out_pos, n);
  s.out_pos += n;
  if (s.out_pos == s.body_out.size()) {
    s.body_out.clear();
    s.out_pos = 0;
  }
  eof = s.out_eof && s.body_out.empty();
  if (n > 0) s.signal.notify();
  return n;
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
    if (h.name == ":method")
      method = h.value;
    else if (h.name == ":scheme")
      scheme = h.value;
    else if (h.name == ":authority")
      authority = h.value;
    else if (h.name == ":path")
      path = h.value;
    else if (h.name == "host" && !found_host) {
      host_field = h.value;
      found_host = true;
    } else if (h.name == "x-request-id" && !h.value.empty() && h.value.size() <= 128) {
      s.request_id = h.value;
    }
  }
  if (s.request_id.empty()) s.request_id = fmt::format("{:016x}{:016x}", ctx_.rng(), ctx_.rng());
  s.method = method;
  if (method == "CONNECT") co_return local(s, 405);
  if (authority.empty()) authority = host_field;
  std::string host, norm_path;
  if (!model::normalize_host(authority, host) || !model::normalize_path(path, norm_path))
    co_return local(s, 400);

  model::SnapshotConstPtr snapshot = ctx_.snapshot;  // this request keeps its snapshot
  if (!listener_.api_proxy_token.empty()) co_return local(s, 404);
  const model::Route* route = snapshot ? snapshot->route(host, norm_path) : nullptr;
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
  // The upstream request head, as an HTTP/1.1 head would be parsed (Cookie fields joined).
  http1::MessageHead head;
  head.append_method(method);
  head.append_target(path);
  std::string cookies;
  for (auto& h : s.headers) {
    if (h.name.starts_with(':')) continue;
    if (h.name == "cookie") {
      if (!cookies.empty()) cookies.append("; ");
      cookies.append(h.value);
      continue;
    }
    head.append_name(h.name);
    head.append_value(h.value);
  }
  if (!cookies.empty()) {
    head.append_name("cookie");
    head.append_value(cookies);
  }
  const bool has_length = head.count("content-length") > 0;
  const bool chunked = !s.end_stream && !has_length;
  std::string up_head = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\n", method, path,
                                    found_host ? host_field : authority);
  copy_end_to_end_fields(head, up_head, true);
  if (chunked) up_head.append("Transfer-Encoding: chunked\r\n");
  fmt::format_to(std::back_inserter(up_head),
                 "X-Request-ID: {}\r\nX-Real-IP: {}\r\nX-Forwarded-For: {}\r\n"
                 "X-Forwarded-Host: {}\r\nX-Forwarded-Port: {}\r\nX-Forwarded-Proto: {}\r\n"
                 "X-Scheme: {}\r\n\r\n",
                 s.request_id, client_ip_, client_ip_, authority, listener_.port, listener_.scheme,
                 listener_.scheme);
  std::string_view length = head.get("content-length");
  std::from_chars(length.data(), length.data() + length.size(), s.content_length);
  s.up_head = std::move(up_head);
  s.chunked = chunked;
  s.headers.clear();
  co_await proxy(s, *route);
}

asio::awaitable<void> Http2Session::proxy(Stream& s, const model::Route& route) {
  const model::Cluster& cluster = *route.cluster;
  auto& stats = ctx_.stats.requests[route.stats_key];
  const std::string& method = s.method;
  const std::string& up_head = s.up_head;
  const bool chunked = s.chunked;
  const uint64_t content_length = s.content_length;
  const bool head_request = method == "HEAD";
  const Limits& limits = ctx_.limits;
  const int64_t max_body =
      route.options.max_body_bytes >= 0 ? route.options.max_body_bytes : limits.max_body_bytes;
  if (cluster.endpoints.empty()) co_return local(s, 503, route.stats_key);
  if (max_body > 0 && content_length > static_cast<uint64_t>(max_body))
    co_return local(s, 413, route.stats_key);
  Millis connect_timeout = route.options.connect_timeout_ms >= 0
                               ? Millis(route.options.connect_timeout_ms)
                               : limits.upstream_connect_timeout;
  Millis read_timeout = route.options.read_timeout_ms >= 0 ? Millis(route.options.read_timeout_ms)
                                                           : limits.upstream_read_timeout;
  Millis send_timeout = route.options.send_timeout_ms >= 0 ? Millis(route.options.send_timeout_ms)
                                                           : limits.upstream_send_timeout;

  std::vector<const model::Endpoint*> tried;
  bool body_sent = false;
  int failure_status = 502;
  const auto started = Clock::now();
  for (int attempt = 0; attempt < limits.max_attempts && !s.closed; ++attempt) {
    const model::Endpoint* ep = ctx_.upstreams.pick(cluster, tried);
    if (!ep) break;
    tried.push_back(ep);
    upstream::ConnectionPtr conn = ctx_.upstreams.take_idle(ep->address);
    const bool reused = conn != nullptr;
    struct UpGuard {
      Stream& s;
      ~UpGuard() { s.up = nullptr; }
    } up_guard{s};
    if (!conn) {
      conn = std::make_unique<upstream::Connection>(down_.socket().get_executor());
      conn->endpoint = ep->address;
      s.up = conn.get();
      auto r = co_await timed(conn->socket.async_connect(to_asio(ep->address), kUseTuple),
                              connect_timeout);
      if (s.closed) co_return;
      if (!r || std::get<0>(*r)) {
        ctx_.stats.upstream_connect_failures++;
        ctx_.upstreams.on_connect_failure(ep->address);
        failure_status = r ? 502 : 504;
        continue;
      }
      ctx_.upstreams.on_connect_success(ep->address);
      boost::system::error_code ignored;
      conn->socket.set_option(tcp::no_delay(true), ignored);
    }
    s.up = conn.get();
    ctx_.upstreams.on_request_start(ep->address);
    struct EndGuard {
      upstream::Upstreams& u;
      model::SocketAddress a;
      ~EndGuard() { u.on_request_end(a); }
    } end_guard{ctx_.upstreams, ep->address};

    auto write_up = [&](std::string_view bytes) -> asio::awaitable<bool> {
      auto r = co_await timed(asio::async_write(conn->socket, asio::buffer(bytes), kUseTuple),
                              send_timeout);
      co_return r && !std::get<0>(*r);
    };
    if (!co_await write_up(up_head)) {
      if (s.closed) co_return;
      failure_status = 502;
      if (reused) tried.pop_back();
      continue;
    }

    // Stream the request body as DATA arrives; its window opens as it is forwarded.
    bool request_complete = s.end_stream && s.body_in.empty() && !chunked;
    uint64_t body_bytes = 0;
    while (!request_complete) {
      body_sent = true;
      if (!s.body_in.empty()) {
        std::string chunk = std::move(s.body_in);
        s.body_in.clear();
        body_bytes += chunk.size();
        if (max_body > 0 && body_bytes > static_cast<uint64_t>(max_body)) {
          codec_.consume(s.id, chunk.size());
          co_return local(s, 413, route.stats_key);
        }
        bool ok = true;
        if (chunked) ok = co_await write_up(fmt::format("{:x}\r\n", chunk.size()));
        if (ok) ok = co_await write_up(chunk);
        if (ok && chunked) ok = co_await write_up("\r\n");
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
          if (!co_await write_up(last) && s.closed) co_return;
        }
        request_complete = true;
        break;
      }
      if (s.closed) co_return;
      if (!co_await s.signal.wait(limits.client_body_timeout) && !s.closed && s.body_in.empty() &&
          !s.end_stream) {
        if (s.closed) co_return;
        co_return local(s, 408, route.stats_key);
      }
      if (s.closed) co_return;
    }
    if (!request_complete) discard_body(s);

    // The response head (interim 1xx answers are dropped).
    ByteBuffer& up_in = conn->in;
    http1::Parser response(http1::Parser::Type::Response, limits.max_head_bytes);
    response.set_no_body(head_request);
    bool got_head = false, got_bytes = false, failed = false, timeout = false;
    while (!got_head) {
      if (!up_in.empty()) {
        auto step = response.execute(up_in.data(), up_in.size());
        if (step.event == http1::Parser::Event::Error) {
          failed = true;
          break;
        }
        up_in.consume(step.consumed);
        if (step.event == http1::Parser::Event::HeadersComplete) {
          int status = response.head().status;
          if (status >= 100 && status < 200) {
            response.resume();
            auto end = response.execute(up_in.data(), 0);
            if (end.event == http1::Parser::Event::MessageComplete) response.resume();
            continue;
          }
          got_head = true;
          break;
        }
        if (step.event == http1::Parser::Event::MessageComplete) response.resume();
      }
      auto r =
          co_await timed(conn->socket.async_read_some(free_space(up_in), kUseTuple), read_timeout);
      if (s.closed) co_return;
      if (!r || std::get<0>(*r)) {
        failed = true;
        timeout = !r;
        break;
      }
      got_bytes = true;
      up_in.commit(std::get<1>(*r));
    }
    if (failed) {
      failure_status = timeout ? 504 : 502;
      bool retry = !timeout && !got_bytes && !body_sent && (idempotent(method) || reused);
      if (retry) {
        if (reused) tried.pop_back();
        continue;
      }
      co_return local(s, failure_status, route.stats_key);
    }

    ctx_.stats.observe_latency(std::chrono::duration<double>(Clock::now() - started).count());
    const http1::MessageHead& rh = response.head();
    const int status = rh.status;
    stats.by_status[status]++;
    std::vector<http2::Header> headers;
    for (size_t i = 0; i < rh.size(); ++i) {
      std::string_view name = rh.name(i);
      if (is_hop_by_hop(name) || rh.has_token("connection", name)) continue;
      http2::Header h{std::string(name), std::string(rh.value(i))};
      lower(h.name);
      headers.push_back(std::move(h));
    }
    if (!listener_.hsts.empty() && down_.is_tls() && !rh.count("strict-transport-security"))
      headers.push_back({"strict-transport-security", listener_.hsts});
    const bool until_close = response.body_until_close();
    const bool no_body =
        head_request || status == 204 || status == 304 ||
        (!response.chunked() && !until_close && response.content_length().value_or(0) == 0);
    s.responded = true;
    codec_.submit_response(s.id, status, headers, !no_body);
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
      auto r =
          co_await timed(conn->socket.async_read_some(free_space(up_in), kUseTuple), read_timeout);
      if (s.closed) break;
      if (!r) break;
      auto [rec, rn] = *r;
      if (rec) {
        if (rec == asio::error::eof && until_close)
          complete = response.finish().event == http1::Parser::Event::MessageComplete;
        break;
      }
      up_in.commit(rn);
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
    if (request_complete && response.keep_alive() && !until_close && up_in.empty()) {
      ++conn->requests;
      s.up = nullptr;
      ctx_.upstreams.put_idle(std::move(conn));
    }
    co_return;
  }
  if (!s.closed) local(s, failure_status, route.stats_key);
}

asio::awaitable<void> serve_http2(WorkerContext& ctx, DownstreamStream stream,
                                  const ListenerInfo& listener) {
  Http2Session session(ctx, std::move(stream), listener);
  co_await session.run();
}

}  // namespace kedge::proxy
