#include "proxy/http_session.h"

#include "proxy/api_proxy.h"
#include "proxy/forwarding.h"
#include "proxy/http2_session.h"
#include "proxy/local_reply.h"
#include "proxy/upstream_exchange.h"
#include "tls/server_context.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <optional>

#include <sys/socket.h>

namespace kedge::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kBufferSize = 16 * 1024;
using Clock = std::chrono::steady_clock;

// The tunnel pumps bytes between the client (plain or TLS) and an upstream socket alike.
using IoResult = DownstreamStream::IoResult;
asio::awaitable<IoResult> read_some(upstream::Connection& c, asio::mutable_buffer b) {
  co_return co_await c.read_some(b);
}
asio::awaitable<IoResult> read_some(DownstreamStream& s, asio::mutable_buffer b) {
  co_return co_await s.read_some(b);
}
asio::awaitable<IoResult> write_all(upstream::Connection& c, asio::const_buffer b) {
  co_return co_await c.write(b);
}
asio::awaitable<IoResult> write_all(DownstreamStream& s, asio::const_buffer b) {
  co_return co_await s.write(b);
}
tcp::socket& lowest(upstream::Connection& c) { return c.socket; }
tcp::socket& lowest(DownstreamStream& s) { return s.socket(); }

}  // namespace

HttpSession::HttpSession(WorkerContext& ctx, DownstreamStream stream, const ListenerInfo& listener,
                         bool h2c)
    : ctx_(ctx),
      sessions_(ctx.sessions),
      down_(std::move(stream)),
      listener_(listener),
      deadline_(ctx.deadlines, &down_),
      in_(kBufferSize),
      request_(http1::Parser::Type::Request, ctx.limits.max_head_bytes),
      h2c_(h2c) {
  ClientAddress client = client_address(down_.peer());
  client_ = client.address;
  client_ip_ = std::move(client.text);
  if (down_.is_tls()) no_delay();  // as nginx: TLS records go out as they are written
  if (sessions_) sessions_->insert(this);
}

HttpSession::~HttpSession() {
  if (sessions_) sessions_->erase(this);
}

void HttpSession::close_if_idle() {
  if (deadline_.phase() != Phase::Idle || done_) return;
  down_.cancel();  // the pending read ends; one_request() closes the connection
}

std::optional<DownstreamStream> HttpSession::take_http2() {
  if (!http2_) return std::nullopt;
  http2_ = false;
  down_.unread(std::string_view(in_.data(), in_.size()));
  in_.consume(in_.size());
  return std::move(down_);
}

asio::awaitable<void> HttpSession::run() {
  deadline_.start();
  co_await serve();
}

asio::awaitable<void> HttpSession::serve() {
  ++ctx_.stats.active_connections;
  ++ctx_.stats.accepted_connections;
  arm(Phase::Idle, ctx_.limits.keepalive_timeout);
  while (!ctx_.draining) {
    Outcome outcome = co_await one_request();
    if (outcome == Outcome::Http2) {  // the connection goes on as HTTP/2, which counts it
      http2_ = true;
      --ctx_.stats.active_connections;
      --ctx_.stats.accepted_connections;
      done_ = true;
      deadline_.stop();
      co_return;
    }
    if (outcome == Outcome::Close) break;
  }
  boost::system::error_code ec;
  if (linger_) {
    down_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (!ec) co_await linger();
  }
  down_.socket().close(ec);
  --ctx_.stats.active_connections;
  done_ = true;
  deadline_.stop();
}

asio::awaitable<void> HttpSession::linger() {
  // Closing a socket with unread input makes the kernel send a reset, which can destroy the
  // reply (a 413, say) before the client has read it. So after such a reply, read and discard
  // what the client still sends until it closes, for a bounded time (nginx's lingering close).
  constexpr auto kLingerIdle = std::chrono::seconds(2);
  constexpr auto kLingerTotal = std::chrono::seconds(10);
  const auto until = Clock::now() + kLingerTotal;
  while (Clock::now() < until) {
    in_.consume(in_.size());
    arm(Phase::Linger,
        std::min<Millis>(kLingerIdle, std::chrono::duration_cast<Millis>(until - Clock::now())));
    auto [ec, n] = co_await down_.read_some(free_space(in_));
    if (ec) break;
  }
}

void HttpSession::no_delay() {
  boost::system::error_code ignored;
  down_.socket().set_option(tcp::no_delay(true), ignored);
  no_delay_ = true;
}

asio::awaitable<bool> HttpSession::write_down(const char* data, size_t size) {
  // Nagle's algorithm holds a small write back only while earlier data is unacknowledged, so
  // the first write never waits: a connection that serves one response costs no setsockopt.
  if (!no_delay_ && wrote_) no_delay();
  wrote_ = true;
  arm(Phase::ClientSend, ctx_.limits.client_body_timeout);
  auto [ec, n] = co_await down_.write(asio::buffer(data, size));
  co_return !ec;
}

asio::awaitable<HttpSession::Outcome> HttpSession::reply(int status, bool close) {
  if (close) linger_ = true;  // a local reply that closes may leave a request body unread
  std::string bytes = local_reply(status, close, request_id_, head_request_);
  co_await write_down(bytes.data(), bytes.size());
  co_return close ? Outcome::Close : Outcome::KeepAlive;
}

asio::awaitable<HttpSession::Outcome> HttpSession::one_request() {
  request_id_.clear();
  head_request_ = false;
  // Read the head. The idle timer runs until the first byte, then the header timer.
  bool started = !in_.empty();
  arm(started ? Phase::ClientHeader : Phase::Idle,
      started ? ctx_.limits.client_header_timeout : ctx_.limits.keepalive_timeout);
  while (true) {
    if (h2c_ && !in_.empty()) {
      // Prior-knowledge h2c opens with "PRI * HTTP/2.0": "PRI " is no method kedge serves.
      std::string_view seen(in_.data(), std::min<size_t>(in_.size(), 4));
      if (seen == std::string_view("PRI ").substr(0, seen.size())) {
        if (seen.size() == 4) co_return Outcome::Http2;
      } else {
        h2c_ = false;
      }
    }
    if (!in_.empty() && !h2c_) {
      auto step = request_.execute(in_.data(), in_.size());
      if (step.event == http1::Parser::Event::Error) {
        spdlog::debug("{}: bad request: {}", client_ip_, request_.error_reason());
        ctx_.stats.unrouted[request_.error_status()]++;
        co_return co_await reply(request_.error_status(), true);
      }
      in_.consume(step.consumed);
      if (step.event == http1::Parser::Event::HeadersComplete) break;
      if (step.event == http1::Parser::Event::MessageComplete) {  // end of the previous request
        request_.resume();
        continue;
      }
    }
    // The parser consumes every byte of an incomplete head, so the buffer only fills up with a
    // head and the body or requests behind it, which are read on after the head completes.
    auto space = free_space(in_);
    if (space.size() == 0) co_return co_await reply(431, true);
    auto [ec, n] = co_await down_.read_some(space);
    if (ec) {
      if (timed_out(Phase::ClientHeader)) co_return co_await reply(408, true);
      co_return Outcome::Close;
    }
    in_.commit(n);
    if (!started) {  // the first byte of a request: the whole head must follow in time
      started = true;
      arm(Phase::ClientHeader, ctx_.limits.client_header_timeout);
    }
  }
  request_.resume();

  const http1::MessageHead& head = request_.head();
  head_request_ = head.method() == "HEAD";
  if (auto rid = head.get("x-request-id"); !rid.empty() && rid.size() <= 128) {
    request_id_ = rid;
  } else {
    make_request_id(ctx_.rng, request_id_);
  }

  // Framing rules that keep request smuggling out (RFC 9112 §6.3).
  bool has_te = head.count("transfer-encoding") > 0;
  // A request body is chunked or has a length; any other transfer coding cannot be framed.
  if ((has_te && head.count("content-length") > 0) || (has_te && !request_.chunked()) ||
      head.count("content-length") > 1 || head.version_major != 1) {
    ctx_.stats.unrouted[400]++;
    co_return co_await reply(400, true);
  }
  if (head.method() == "CONNECT") {
    ctx_.stats.unrouted[405]++;
    co_return co_await reply(405, true);
  }

  // Host: exactly one for HTTP/1.1; an absolute-form target's authority overrides it.
  std::string_view target = head.target();
  std::string_view authority;
  bool found_host = false;
  std::string_view host_field = head.get("host", &found_host);
  if (target.starts_with("http://") || target.starts_with("https://")) {
    auto rest = target.substr(target.find("//") + 2);
    auto slash = rest.find('/');
    authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else {
    authority = host_field;
  }
  bool bad_host = (head.version_minor >= 1 && (!found_host || head.count("host") > 1));
  const bool memo = !bad_host && memo_.hit(ctx_.snapshot_epoch, authority, target);
  bool path_ok = true;
  if (!memo) {
    memo_.valid = false;
    path_ok = model::normalize_path(target, path_);
    if (bad_host || !model::normalize_host(authority, memo_.host) ||
        !(path_ok || (target == "*" && head.method() == "OPTIONS"))) {
      ctx_.stats.unrouted[400]++;
      co_return co_await reply(400, true);
    }
  }

  model::SnapshotConstPtr snapshot = ctx_.snapshot;  // this request keeps its snapshot
  if (!listener_.api_proxy_token.empty()) co_return co_await api_proxy(snapshot);
  const model::Route* route = memo_.route;
  if (!memo) {
    route = snapshot ? snapshot->route(memo_.host, path_) : nullptr;
    if (path_ok) memo_.store(ctx_.snapshot_epoch, authority, target, route);
  }
  bool has_body = request_.chunked() || request_.content_length().value_or(0) > 0;
  if (down_.is_tls() && !down_.server_name().empty() && memo_.host != down_.server_name()) {
    // Another host on this TLS connection (HTTP/2 coalescing, or a client's mistake) is routed
    // by Host only if the certificate chosen by SNI covers it; else 421, as ingress-nginx.
    const tls::ServerContext* cert =
        down_.handshake_snapshot()->certificate_for(down_.server_name());
    if (!cert || !cert->covers(memo_.host)) {
      ctx_.stats.unrouted[421]++;
      co_return co_await reply(421, has_body || !request_.keep_alive());
    }
  }
  if (!route) {
    ctx_.stats.unrouted[404]++;
    co_return co_await reply(404, has_body || !request_.keep_alive());
  }
  if (route->ssl_redirect && !down_.is_tls() && listener_.https_port != 0) {
    // 308 keeps the method and body, as ingress-nginx's default redirect does.
    std::string location =
        listener_.https_port == 443
            ? fmt::format("https://{}{}", memo_.host, head.target())
            : fmt::format("https://{}:{}{}", memo_.host, listener_.https_port, head.target());
    std::string body = "308 Permanent Redirect\n";
    bool close = has_body || !request_.keep_alive();
    std::string bytes = fmt::format(
        "HTTP/1.1 308 Permanent Redirect\r\nServer: kedge\r\nLocation: {}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}\r\n{}",
        location, body.size(), close ? "Connection: close\r\n" : "", head_request_ ? "" : body);
    ctx_.stats.requests[route->stats_key].by_status[308]++;
    if (close) linger_ = true;
    co_await write_down(bytes.data(), bytes.size());
    co_return close ? Outcome::Close : Outcome::KeepAlive;
  }
  ClientLimiter::Hold hold;  // this request's place among its client's requests in flight
  if (route->options.client_limits) {
    int status = admit(ctx_.client_limiter, *route->options.client_limits, client_,
                       ctx_.limits.limit_req_status, ctx_.limits.limit_conn_status, hold);
    if (status != 0) {
      ctx_.stats.requests[route->stats_key].by_status[status]++;
      co_return co_await reply(status, has_body || !request_.keep_alive());
    }
  }
  Outcome outcome = co_await proxy(*route);
  co_return outcome;
}

asio::awaitable<HttpSession::Outcome> HttpSession::api_proxy(
    const model::SnapshotConstPtr& snapshot) {
  const http1::MessageHead& head = request_.head();
  bool close =
      request_.chunked() || request_.content_length().value_or(0) > 0 || !request_.keep_alive();
  if (!api_proxy_authorized(head.get("authorization"), listener_.api_proxy_token)) {
    ctx_.stats.unrouted[401]++;
    co_return co_await reply(401, close);
  }
  ApiProxyTarget t = snapshot ? resolve_api_proxy(*snapshot, head.target()) : ApiProxyTarget{404};
  if (t.status == 301) {
    std::string bytes =
        fmt::format("HTTP/1.1 301 Moved Permanently\r\nLocation: {}\r\nContent-Length: 0\r\n{}\r\n",
                    t.location, close ? "Connection: close\r\n" : "");
    co_await write_down(bytes.data(), bytes.size());
    co_return close ? Outcome::Close : Outcome::KeepAlive;
  }
  if (t.status != 0) {
    ctx_.stats.unrouted[t.status]++;
    co_return co_await reply(t.status, close);
  }
  model::Route route;
  route.cluster = t.cluster;
  route.stats_key = fmt::format("ingress=\"\",service=\"{}\"", t.cluster->name);
  target_override_ = std::move(t.upstream_target);
  Outcome outcome = co_await proxy(route);
  target_override_.clear();
  co_return outcome;
}

void HttpSession::build_upstream_head(std::string& out, bool upgrade, bool chunked) {
  const http1::MessageHead& head = request_.head();
  std::string_view target = target_override_.empty() ? head.target() : target_override_;
  std::string_view authority;
  if (target.starts_with("http://") || target.starts_with("https://")) {
    auto rest = target.substr(target.find("//") + 2);
    auto slash = rest.find('/');
    authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  }
  out.clear();
  out.append(head.method());
  out.push_back(' ');
  out.append(target);
  out.append(" HTTP/1.1\r\n");
  // An absolute-form target's authority replaces the Host field (RFC 9112 §3.2.2).
  bool found_host = false;
  std::string_view host = head.get("host", &found_host);
  if (!authority.empty()) {
    host = authority;
    found_host = true;
  }
  out.append("Host: ").append(found_host ? host : std::string_view(memo_.host)).append("\r\n");
  // The API proxy's bearer token is for kedge, not for the endpoint.
  copy_end_to_end_fields(head, out, true, target_override_.empty() ? "" : "authorization");
  if (upgrade) {
    out.append("Connection: upgrade\r\nUpgrade: ").append(head.get("upgrade")).append("\r\n");
  }
  if (chunked) out.append("Transfer-Encoding: chunked\r\n");
  std::string_view original_host = found_host ? host : std::string_view(memo_.host);
  append_forwarding_fields(out, request_id_, client_ip_, original_host, listener_.port,
                           listener_.scheme);
}

namespace {

/// While it lives, the client's end of the stream abandons the exchange `deadline` bounds.
class AbandonOnEnd {
 public:
  AbandonOnEnd(DownstreamStream& down, Deadline& deadline) : down_(down) {
    down_.report_end([](void* d) { static_cast<Deadline*>(d)->abandon(); }, &deadline);
  }
  ~AbandonOnEnd() { down_.stop_end_report(); }
  AbandonOnEnd(const AbandonOnEnd&) = delete;
  AbandonOnEnd& operator=(const AbandonOnEnd&) = delete;

 private:
  DownstreamStream& down_;
};

}  // namespace

asio::awaitable<HttpSession::Outcome> HttpSession::proxy(const model::Route& route) {
  const model::Cluster& cluster = *route.cluster;
  const http1::MessageHead& head = request_.head();
  auto& stats = ctx_.stats.requests[route.stats_key];
  const bool chunked = request_.chunked();
  const uint64_t content_length = request_.content_length().value_or(0);
  const bool has_body = chunked || content_length > 0;
  const bool upgrade = request_.upgrade() && head.method() == "GET" && !has_body;
  const Limits& limits = ctx_.limits;
  const int64_t max_body =
      route.options.max_body_bytes >= 0 ? route.options.max_body_bytes : limits.max_body_bytes;
  auto local = [&](int status, bool close) -> asio::awaitable<Outcome> {
    if (deadline_.abandoned()) {  // nginx's 499: the client closed the request
      stats.by_status[499]++;
      co_return Outcome::Close;
    }
    stats.by_status[status]++;
    co_return co_await reply(status, close || !request_.keep_alive());
  };

  if (cluster.endpoints.empty()) co_return co_await local(503, has_body);
  if (max_body > 0 && content_length > static_cast<uint64_t>(max_body))
    co_return co_await local(413, true);
  // gRPC needs HTTP/2 end to end (trailers); kedge does not translate HTTP/1.1 to it.
  if (model::is_http2(route.options.protocol)) co_return co_await local(502, has_body);

  build_upstream_head(up_head_, upgrade, chunked);
  // A client that leaves (closes, resets or shuts down its side) while its request is served
  // abandons the exchange, as nginx does (proxy_ignore_client_abort off): the upstream
  // connection closes, and no other endpoint is tried.
  down_.watch(ctx_.readiness);
  std::optional<AbandonOnEnd> abandon_on_end(std::in_place, down_, deadline_);
  UpstreamExchange exchange(ctx_, route, deadline_, head.method(), head_request_, has_body);
  bool request_complete = !has_body;
  bool answered = false;
  while (!answered) {
    // (g++ 12 miscompiles a co_await in a short-circuit operand: keep it a statement.)
    bool opened = co_await exchange.open(up_head_);
    if (!opened) break;
    // Stream the body, with its framing, as it arrives.
    if (has_body) {
      if (head.has_token("expect", "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        if (!co_await write_down(kContinue.data(), kContinue.size())) co_return Outcome::Close;
      }
      bool body_done = false;
      std::optional<BufferPool::Lease> lease;
      while (!body_done) {
        std::string_view bytes(in_.data(), in_.size());  // to parse and forward
        const uint64_t left = chunked ? 0 : content_length - request_.body_bytes();
        const bool lent = bytes.empty() && left > in_.writable();
        if (bytes.empty()) {
          arm(Phase::ClientBody, limits.client_body_timeout);
          // A long body with a length goes through a lent 64 KiB buffer, read up to its end and
          // no further: what follows it is the next request's, and belongs in in_.
          if (lent && !lease) lease.emplace(ctx_.body_buffers.take());
          auto room = lent ? asio::buffer(lease->data(),
                                          std::min<uint64_t>(left, BufferPool::Lease::size()))
                           : free_space(in_);
          auto [rec, rn] = co_await down_.read_some(room);
          if (rec) {
            if (timed_out(Phase::ClientBody)) co_return co_await local(408, true);
            co_return Outcome::Close;
          }
          if (!lent) {
            in_.commit(rn);
            continue;
          }
          bytes = std::string_view(lease->data(), rn);
        }
        auto step = request_.execute(bytes.data(), bytes.size());
        if (step.event == http1::Parser::Event::Error)
          co_return co_await local(request_.error_status(), true);
        if (max_body > 0 && request_.body_bytes() > static_cast<uint64_t>(max_body))
          co_return co_await local(413, true);
        bool sent = co_await exchange.write(bytes.substr(0, step.consumed));
        if (!lent) in_.consume(step.consumed);
        if (!sent) break;  // the upstream may still have answered (e.g. 413): read it below
        if (step.event == http1::Parser::Event::MessageComplete) {
          request_.resume();
          body_done = true;
        }
      }
      request_complete = body_done;  // if not, the upstream's answer is the last on this connection
    }

    // The response head; interim ones (103 Early Hints) pass through, the final one follows.
    while (true) {
      auto result = co_await exchange.read_head();
      if (result == UpstreamExchange::Head::Interim) {
        const http1::MessageHead& ih = exchange.response().head();
        if (ih.status == 100) continue;
        out_.clear();
        append_status_line(out_, ih.status, ih.reason());
        copy_end_to_end_fields(ih, out_, false);
        out_.append("\r\n");
        if (!co_await write_down(out_.data(), out_.size())) co_return Outcome::Close;
        continue;
      }
      if (result == UpstreamExchange::Head::Failed)
        co_return co_await local(exchange.failure_status(), true);
      answered = result == UpstreamExchange::Head::Final;
      break;
    }
  }
  if (!answered) co_return co_await local(exchange.failure_status(), true);

  http1::Parser& response = exchange.response();
  upstream::Connection& conn = exchange.connection();
  const http1::MessageHead& rh = response.head();
  const int status = rh.status;
  stats.by_status[status]++;

  if (status == 101 && upgrade) {
    out_.clear();
    out_.append("HTTP/1.1 101 Switching Protocols\r\n");
    copy_end_to_end_fields(rh, out_, false);
    out_.append("Connection: upgrade\r\nUpgrade: ").append(rh.get("upgrade")).append("\r\n\r\n");
    abandon_on_end.reset();  // a tunnel carries each side's end to the other
    if (co_await write_down(out_.data(), out_.size())) co_await tunnel(conn);
    co_return Outcome::Close;
  }

  // Response head for the client. HTTP/1.0 clients cannot read chunked bodies: decode them.
  const bool client_10 = head.version_minor == 0;
  const bool dechunk = client_10 && response.chunked();
  const bool until_close = response.body_until_close();
  bool keep_alive = request_.keep_alive() && !until_close && !dechunk && !upgrade &&
                    !ctx_.draining && request_complete;
  out_.clear();
  append_status_line(out_, status, rh.reason());
  copy_end_to_end_fields(rh, out_, false);
  if (response.chunked() && !dechunk) out_.append("Transfer-Encoding: chunked\r\n");
  if (!listener_.hsts.empty() && down_.is_tls() && !rh.count("strict-transport-security"))
    out_.append("Strict-Transport-Security: ").append(listener_.hsts).append("\r\n");
  if (!keep_alive)
    out_.append("Connection: close\r\n");
  else if (client_10)
    out_.append("Connection: keep-alive\r\n");
  out_.append("\r\n");

  // Stream the body. A message without body completes on an empty execute. The head waits in
  // out_ for the body bytes that came with it, so a small response is one write, not two.
  response.resume();
  ByteBuffer& up_in = conn.in;
  bool complete = false;
  bool head_sent = false;
  bool extra = false;
  while (true) {
    auto step = response.execute(up_in.data(), up_in.size());
    if (step.event == http1::Parser::Event::Error) {
      if (!head_sent) {  // nothing went out yet: the client gets a 502 instead of a cut
        stats.by_status[status]--;
        co_return co_await local(502, true);
      }
      break;
    }
    if (step.consumed > 0 && !head_sent) {
      if (dechunk) {
        for (auto span : response.body_spans()) out_.append(span.data, span.size);
      } else {
        out_.append(up_in.data(), step.consumed);
      }
      up_in.consume(step.consumed);
    } else if (step.consumed > 0) {
      bool ok = true;
      if (dechunk) {
        for (auto span : response.body_spans())
          if (ok) ok = co_await write_down(span.data, span.size);
      } else {
        ok = co_await write_down(up_in.data(), step.consumed);
      }
      if (!ok) break;
      up_in.consume(step.consumed);
    }
    if (!head_sent) {  // before waiting for more of the body, or at its end
      head_sent = true;
      if (!co_await write_down(out_.data(), out_.size())) break;
    }
    if (step.event == http1::Parser::Event::MessageComplete) {
      complete = true;
      break;
    }
    if (!dechunk && up_in.empty()) {
      complete = co_await stream_body(exchange, response, until_close, extra);
      break;
    }
    if (!co_await exchange.read_more()) {
      if (exchange.eof() && until_close)
        complete = response.finish().event == http1::Parser::Event::MessageComplete;
      break;
    }
  }
  if (!request_complete) linger_ = true;    // the upstream answered before the body ended
  if (!complete) co_return Outcome::Close;  // truncated: the client must see the cut
  if (response.keep_alive() && !until_close && up_in.empty() && !extra) exchange.release();
  co_return keep_alive ? Outcome::KeepAlive : Outcome::Close;
}

asio::awaitable<bool> HttpSession::stream_body(UpstreamExchange& exchange, http1::Parser& response,
                                               bool until_close, bool& extra) {
  BufferPool::Lease buffer = ctx_.body_buffers.take();
  while (true) {
    size_t n = co_await exchange.read_into(asio::buffer(buffer.data(), buffer.size()));
    if (n == 0) {  // the end of the stream completes only a body delimited by it
      if (!exchange.eof() || !until_close) co_return false;
      co_return response.finish().event == http1::Parser::Event::MessageComplete;
    }
    // Within a body the parser takes every byte, up to the end of the message.
    auto step = response.execute(buffer.data(), n);
    if (step.event == http1::Parser::Event::Error) co_return false;
    if (step.consumed > 0 && !co_await write_down(buffer.data(), step.consumed)) co_return false;
    if (step.event == http1::Parser::Event::MessageComplete) {
      extra = step.consumed < n;
      co_return true;
    }
  }
}

asio::awaitable<void> HttpSession::tunnel(upstream::Connection& up) {
  if (!no_delay_) no_delay();
  // Bytes that arrived with the heads belong to the tunnel.
  auto pump = [this](auto& from, auto& to, ByteBuffer& buf) -> asio::awaitable<void> {
    while (true) {
      if (!buf.empty()) {
        auto [wec, wn] = co_await write_all(to, asio::buffer(buf.data(), buf.size()));
        if (wec) break;
        buf.consume(wn);
      }
      arm(Phase::UpstreamRead, ctx_.limits.upstream_read_timeout);
      auto [ec, n] = co_await read_some(from, free_space(buf));
      if (ec) break;
      buf.commit(n);
    }
    boost::system::error_code ignored;
    lowest(to).shutdown(tcp::socket::shutdown_send, ignored);
  };
  co_await (pump(down_, up, in_) && pump(up, down_, up.in));
}

asio::awaitable<void> serve_http(WorkerContext& ctx, tcp::socket socket, tcp::endpoint peer,
                                 const ListenerInfo& listener) {
  // A connection holds no session, and no buffer, until its client sends something. The
  // worker's readiness set says when: it watches the connection from now on.
  DownstreamStream down(std::move(socket), std::move(peer));
  down.watch(ctx.readiness, true);
  if (!co_await down.wait_input(ctx.limits.keepalive_timeout)) co_return;  // closes the socket
  // The API proxy's listener speaks HTTP/1.1 only; the others take h2c with prior knowledge,
  // found by the session in the first bytes it reads.
  HttpSession session(ctx, std::move(down), listener, listener.api_proxy_token.empty());
  co_await session.run();
  if (std::optional<DownstreamStream> h2 = session.take_http2())
    co_await serve_http2(ctx, std::move(*h2), listener);
}

namespace {

/// Picks the certificate for the handshake from the snapshot the connection was accepted under.
class SnapshotSniSelector final : public tls::SniSelector {
 public:
  explicit SnapshotSniSelector(const model::Snapshot& snapshot) : snapshot_(snapshot) {}
  const tls::ServerContext* select(std::string_view server_name) override {
    name = server_name;
    return snapshot_.certificate_for(server_name);
  }
  std::string name;

 private:
  const model::Snapshot& snapshot_;
};

}  // namespace

asio::awaitable<void> serve_https(WorkerContext& ctx, tcp::socket socket, tcp::endpoint peer,
                                  const ListenerInfo& listener) {
  model::SnapshotConstPtr snapshot = ctx.snapshot;
  if (!snapshot || !snapshot->default_certificate) co_return;  // closes the socket
  auto stream = std::make_unique<DownstreamStream::Tls>(std::move(socket),
                                                        snapshot->default_certificate->native());
  SnapshotSniSelector selector(*snapshot);
  tls::attach_sni_selector(stream->native_handle(), &selector);
  asio::steady_timer deadline(stream->socket().get_executor(), ctx.limits.client_header_timeout);
  deadline.async_wait([s = &stream->socket()](boost::system::error_code ec) {
    boost::system::error_code ignored;
    if (!ec) s->cancel(ignored);
  });
  boost::system::error_code ec = co_await stream->handshake();
  deadline.cancel();
  tls::attach_sni_selector(stream->native_handle(), nullptr);
  if (ec) {
    spdlog::debug("TLS handshake failed: {}", ec.message());
    co_return;
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(stream->native_handle(), &alpn, &alpn_len);
  if (std::string_view(reinterpret_cast<const char*>(alpn), alpn ? alpn_len : 0) == "h2") {
    co_await serve_http2(
        ctx, DownstreamStream(std::move(stream), std::move(peer), selector.name, snapshot),
        listener);
    co_return;
  }
  HttpSession session(
      ctx, DownstreamStream(std::move(stream), std::move(peer), selector.name, snapshot), listener);
  co_await session.run();
}

}  // namespace kedge::proxy
