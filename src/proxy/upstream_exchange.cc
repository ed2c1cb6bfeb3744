#include "proxy/upstream_exchange.h"

#include "proxy/forwarding.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/ssl.h>

#include <utility>

namespace kedge::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

Millis option_or(int64_t ms, Millis fallback) { return ms >= 0 ? Millis(ms) : fallback; }

}  // namespace

UpstreamExchange::UpstreamExchange(WorkerContext& ctx, const model::Route& route,
                                   Deadline& deadline, std::string_view method, bool head_request,
                                   bool has_body)
    : ctx_(ctx),
      route_(route),
      deadline_(deadline),
      idempotent_(idempotent(method)),
      head_request_(head_request),
      has_body_(has_body),
      connect_timeout_(
          option_or(route.options.connect_timeout_ms, ctx.limits.upstream_connect_timeout)),
      send_timeout_(option_or(route.options.send_timeout_ms, ctx.limits.upstream_send_timeout)),
      read_timeout_(option_or(route.options.read_timeout_ms, ctx.limits.upstream_read_timeout)) {}

UpstreamExchange::~UpstreamExchange() { end_attempt(); }

void UpstreamExchange::forget_stale() {
  tried_.pop_back();  // a stale pooled connection says nothing of the endpoint...
  // ...but those pooled before it may be stale too.
  ctx_.upstreams.prune_idle(conn_->endpoint, conn_->idle_since);
}

void UpstreamExchange::end_attempt() {
  if (endpoint_) ctx_.upstreams.on_request_end(endpoint_->address);
  endpoint_ = nullptr;
  if (deadline_.watched() == conn_.get()) deadline_.watch(nullptr);
  conn_.reset();
}

asio::awaitable<bool> UpstreamExchange::connect(const model::Endpoint& endpoint) {
  const model::UpstreamProtocol protocol = route_.options.protocol;
  conn_ = std::make_unique<upstream::Connection>(co_await asio::this_coro::executor, protocol);
  conn_->endpoint = endpoint.address;
  deadline_.watch(conn_.get());
  deadline_.arm(Phase::Connect, connect_timeout_);
  auto [ec] = co_await conn_->socket.async_connect(to_asio(endpoint.address), kUseTuple);
  if (!ec && model::is_tls(protocol)) {
    // As ingress-nginx by default (proxy-ssl-verify off): encrypted, not authenticated.
    conn_->tls = std::make_unique<upstream::Connection::Tls>(conn_->socket, ctx_.upstream_tls());
    static constexpr unsigned char kH2[] = "\x02h2";
    static constexpr unsigned char kHttp11[] = "\x08http/1.1";
    bool h2 = model::is_http2(protocol);
    SSL_set_alpn_protos(conn_->tls->native_handle(), h2 ? kH2 : kHttp11,
                        h2 ? sizeof kH2 - 1 : sizeof kHttp11 - 1);
    auto [handshake_ec] =
        co_await conn_->tls->async_handshake(asio::ssl::stream_base::client, kUseTuple);
    ec = handshake_ec;
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(conn_->tls->native_handle(), &alpn, &alpn_len);
    if (!ec && h2 && std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "h2")
      ec = asio::error::no_protocol_option;  // a GRPCS backend must speak HTTP/2
  }
  if (!ec && model::is_http2(protocol))
    conn_->h2 = std::make_unique<http2::ClientCodec>(ctx_.limits.http2_max_header_list_size);
  deadline_.watch(nullptr);
  if (deadline_.abandoned()) {  // while connecting: nothing is known of the endpoint
    conn_.reset();
    co_return false;
  }
  if (ec) {
    bool timeout = deadline_.expired(Phase::Connect);
    ctx_.stats.upstream_connect_failures++;
    ctx_.upstreams.on_failure(endpoint.address);
    spdlog::debug("connect to {} for {} failed: {}", endpoint.address.to_string(),
                  route_.cluster->name, timeout ? "timeout" : ec.message());
    failure_status_ = timeout ? 504 : 502;
    conn_.reset();
    co_return false;
  }
  boost::system::error_code ignored;
  conn_->socket.set_option(tcp::no_delay(true), ignored);
  // Plain HTTP/1.1 reads wait for the worker's readiness set to report input.
  if (!conn_->tls && !conn_->h2) ctx_.readiness.watch(conn_->socket.native_handle(), conn_->input);
  co_return true;
}

const model::Endpoint* UpstreamExchange::pick_next() {
  if (attempts_ >= ctx_.limits.max_attempts || deadline_.abandoned()) return nullptr;
  ++attempts_;
  const model::Endpoint* ep = ctx_.upstreams.pick(*route_.cluster, tried_);
  if (!ep) return nullptr;
  tried_.push_back(ep);
  // A bodiless HTTP/1.1 request that finds its pooled connection closed is sent again for
  // free (see read_head): only others pay a syscall to look first.
  const bool verify = has_body_ || model::is_http2(route_.options.protocol);
  conn_ = ctx_.upstreams.take_idle(ep->address, route_.options.protocol, verify);
  reused_ = conn_ != nullptr;
  return ep;
}

void UpstreamExchange::start_attempt(const model::Endpoint& endpoint) {
  endpoint_ = &endpoint;
  ctx_.upstreams.on_request_start(endpoint.address);
  deadline_.watch(conn_.get());
}

bool UpstreamExchange::acquire_pooled() {
  const model::Endpoint* ep = pick_next();
  if (!ep) return false;  // acquire() finds none either, and sets the status
  if (!conn_) {
    picked_ = ep;
    return false;
  }
  start_attempt(*ep);
  return true;
}

asio::awaitable<bool> UpstreamExchange::acquire() {
  while (true) {
    const model::Endpoint* ep = std::exchange(picked_, nullptr);
    if (!ep) ep = pick_next();
    if (!ep) break;
    // A failed connect sent nothing: any method may go to another endpoint.
    if (!conn_) {
      bool connected = co_await connect(*ep);
      if (!connected) continue;
    }
    start_attempt(*ep);
    co_return true;
  }
  if (route_.cluster->endpoints.empty()) failure_status_ = 503;
  co_return false;
}

bool UpstreamExchange::head_sent(boost::system::error_code ec) {
  if (!ec) return true;
  failure_status_ = deadline_.expired(Phase::UpstreamSend) ? 504 : 502;
  if (reused_ && !deadline_.abandoned()) forget_stale();
  end_attempt();
  return false;
}

asio::awaitable<bool> UpstreamExchange::send_head(std::string_view head) {
  deadline_.arm(Phase::UpstreamSend, send_timeout_);
  auto [ec, n] = co_await conn_->write(asio::buffer(head));
  co_return head_sent(ec);
}

asio::awaitable<bool> UpstreamExchange::open(std::string_view head) {
  end_attempt();
  while (true) {
    // Nearly always a pooled connection takes the whole head at once: then nothing here
    // suspends, and no coroutine but this one runs (unless the head joins a round's batch).
    bool acquired = acquire_pooled();
    if (!acquired) acquired = co_await acquire();
    if (!acquired) break;
    deadline_.arm(Phase::UpstreamSend, send_timeout_);
    auto [ec, n] = conn_->send_now(asio::buffer(head));
    if (!ec && n < head.size()) {
      auto [wec, wn] = co_await conn_->write(asio::buffer(head) + n);
      ec = wec;
    }
    if (!head_sent(ec)) continue;
    auto& response = conn_->response;
    if (response)
      response->reset();
    else
      response.emplace(http1::Parser::Type::Response, ctx_.limits.max_head_bytes);
    response->set_no_body(head_request_);
    interim_ = false;
    got_bytes_ = false;
    co_return true;
  }
  co_return false;
}

asio::awaitable<bool> UpstreamExchange::open_h2(const std::vector<http2::Header>& headers,
                                                bool has_body) {
  end_attempt();
  while (true) {
    bool acquired = co_await acquire();
    if (!acquired) break;
    std::string out;
    if (!conn_->h2->submit_request(headers, has_body) || !conn_->h2->drain(out)) {
      if (reused_) forget_stale();
      end_attempt();
      continue;
    }
    bool sent = co_await send_head(out);
    if (sent) co_return true;
  }
  co_return false;
}

asio::awaitable<bool> UpstreamExchange::write(std::string_view bytes) {
  body_sent_ = true;
  deadline_.arm(Phase::UpstreamSend, send_timeout_);
  auto [ec, n] = co_await conn_->write(asio::buffer(bytes));
  co_return !ec;
}

asio::awaitable<UpstreamExchange::Head> UpstreamExchange::read_head() {
  http1::Parser& response = *conn_->response;
  ByteBuffer& in = conn_->in;
  if (interim_) {  // the caller has seen the interim head: on to the next one
    interim_ = false;
    response.resume();
    auto end = response.execute(in.data(), 0);
    if (end.event == http1::Parser::Event::MessageComplete) response.resume();
  }
  deadline_.arm(Phase::UpstreamRead, read_timeout_);
  boost::system::error_code failure;
  while (true) {
    if (!in.empty()) {
      auto step = response.execute(in.data(), in.size());
      if (step.event == http1::Parser::Event::Error) break;
      in.consume(step.consumed);
      if (step.event == http1::Parser::Event::HeadersComplete) {
        int status = response.head().status;
        if (status >= 100 && status < 200 && status != 101) {
          interim_ = true;
          co_return Head::Interim;
        }
        ctx_.stats.observe_latency(std::chrono::duration<double>(Clock::now() - started_).count());
        report(true);
        co_return Head::Final;
      }
      if (step.event == http1::Parser::Event::MessageComplete) response.resume();
    }
    auto [ec, n] = co_await conn_->read_some(free_space(in));
    if (ec) {
      failure = ec;
      break;
    }
    got_bytes_ = true;
    in.commit(n);
  }
  if (deadline_.abandoned()) {  // nothing is known of the endpoint or the pool
    end_attempt();
    co_return Head::Failed;
  }
  bool timeout = deadline_.expired(Phase::UpstreamRead);
  failure_status_ = timeout ? 504 : 502;
  spdlog::debug("upstream {} for {}: {}", conn_->endpoint.to_string(), route_.cluster->name,
                timeout ? "read timeout" : "no valid response");
  // A reset before any byte of a response may be retried when nothing was lost: the body (if
  // any) is gone, and a non-idempotent request is only resent on a stale pooled connection,
  // where the peer closed before it could have seen it.
  bool retry = !timeout && !got_bytes_ && !body_sent_ && (idempotent_ || reused_);
  report(false);
  if (retry && reused_) forget_stale();
  end_attempt();
  co_return retry ? Head::Retry : Head::Failed;
}

asio::awaitable<bool> UpstreamExchange::read_more() {
  size_t n = 0;
  if (!co_await read(free_space(conn_->in), n)) co_return false;
  conn_->in.commit(n);
  co_return true;
}

asio::awaitable<size_t> UpstreamExchange::read_into(asio::mutable_buffer buffer) {
  size_t n = 0;
  co_await read(buffer, n);
  co_return n;
}

asio::awaitable<bool> UpstreamExchange::read(asio::mutable_buffer buffer, size_t& n) {
  deadline_.arm(Phase::UpstreamRead, read_timeout_);
  auto [ec, got] = co_await conn_->read_some(buffer);
  if (ec) {
    // A TLS peer that closes without close_notify ends the stream as surely as a FIN.
    eof_ = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    co_return false;
  }
  n = got;
  co_return true;
}

void UpstreamExchange::report(bool answered) {
  if (!conn_) return;
  if (answered)
    ctx_.upstreams.on_success(conn_->endpoint);
  else if (!reused_)
    ctx_.upstreams.on_failure(conn_->endpoint);
}

void UpstreamExchange::release() {
  if (!conn_) return;
  ++conn_->requests;
  if (deadline_.watched() == conn_.get()) deadline_.watch(nullptr);
  ctx_.upstreams.put_idle(std::move(conn_));
}

}  // namespace kedge::proxy
