#include "tls/stream.h"

#include "common/send_now.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/err.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace kedge::tls {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr size_t kInSize = 32 * 1024;  // two full records and their headers

BIO_METHOD* make_method(int (*read)(BIO*, char*, int), int (*write)(BIO*, const char*, int),
                        long (*ctrl)(BIO*, int, long, void*)) {
  BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kedge");
  if (!m || !BIO_meth_set_read(m, read) || !BIO_meth_set_write(m, write) ||
      !BIO_meth_set_ctrl(m, ctrl))
    throw std::bad_alloc();
  return m;
}

}  // namespace

int Stream::bio_read(BIO* bio, char* data, int size) {
  auto* self = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  size_t available = self->in_end_ - self->in_begin_;
  if (available == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(available, static_cast<size_t>(size));
  std::memcpy(data, self->in_.get() + self->in_begin_, n);
  self->in_begin_ += n;
  if (self->in_begin_ == self->in_end_) self->in_begin_ = self->in_end_ = 0;
  return static_cast<int>(n);
}

int Stream::bio_write(BIO* bio, const char* data, int size) {
  auto* self = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  size_t sent = 0;
  if (self->direct_ && self->out_.empty()) {
    boost::system::error_code ec;
    std::tie(ec, sent) = send_now(self->socket_.native_handle(),
                                  asio::const_buffer(data, static_cast<size_t>(size)));
    if (ec) {  // the record is lost with the connection; the write reports why
      self->send_error_ = ec;
      return size;
    }
  }
  self->out_.append(data + sent, static_cast<size_t>(size) - sent);
  return size;
}

long Stream::bio_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // output is sent by flush(); nothing else applies
}

Stream::Stream(asio::ip::tcp::socket socket, SSL_CTX* ctx)
    : socket_(std::move(socket)), in_(new char[kInSize]), sent_(socket_.get_executor()) {
  static BIO_METHOD* const method = make_method(bio_read, bio_write, bio_ctrl);
  ssl_ = SSL_new(ctx);
  BIO* bio = BIO_new(method);
  if (!ssl_ || !bio) {
    BIO_free(bio);
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by ssl_
  // A renegotiation would make a write wait for a read while HTTP/2 reads on its own.
  SSL_set_options(ssl_, SSL_OP_NO_RENEGOTIATION);
  SSL_set_accept_state(ssl_);
}

Stream::~Stream() { SSL_free(ssl_); }

asio::awaitable<error_code> Stream::fill() {
  if (in_begin_ > 0) {  // OpenSSL takes what it can, so this is rare: keep the tail
    std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  if (in_end_ == kInSize) co_return asio::error::no_buffer_space;
  auto [ec, n] = co_await socket_.async_read_some(
      asio::buffer(in_.get() + in_end_, kInSize - in_end_), kUseTuple);
  if (ec) co_return ec;
  in_end_ += n;
  co_return error_code{};
}

asio::awaitable<error_code> Stream::flush() {
  while (true) {
    if (send_error_) co_return send_error_;
    if (send_running_) {  // the other caller is sending: what it sends next includes ours
      sent_.expires_at(asio::steady_timer::time_point::max());
      co_await sent_.async_wait(kUseTuple);
      continue;
    }
    if (out_.empty()) co_return error_code{};
    // What the socket takes now costs no round through asio; only the rest waits for it.
    auto [now_ec, now_sent] = send_now(socket_.native_handle(), asio::buffer(out_));
    if (now_ec) {
      send_error_ = now_ec;
      co_return now_ec;
    }
    if (now_sent == out_.size()) {
      out_.clear();
      co_return error_code{};
    }
    send_running_ = true;
    sending_.swap(out_);
    auto [ec, n] = co_await asio::async_write(
        socket_, asio::buffer(sending_.data() + now_sent, sending_.size() - now_sent), kUseTuple);
    sending_.clear();
    send_running_ = false;
    if (ec) send_error_ = ec;
    sent_.cancel();
  }
}

asio::awaitable<error_code> Stream::service(int result, bool& retry) {
  retry = false;
  const int err = SSL_get_error(ssl_, result);
  error_code failure;
  if (err == SSL_ERROR_SSL) {
    failure = error_code(static_cast<int>(ERR_get_error()), asio::error::get_ssl_category());
    if (!failure) failure = asio::error::invalid_argument;
  }
  ERR_clear_error();
  // Output first: handshake messages, or the alert that explains a failure.
  if (!out_.empty()) {
    if (error_code ec = co_await flush(); ec && !failure) co_return ec;
  }
  switch (err) {
    case SSL_ERROR_WANT_READ: {
      error_code ec = co_await fill();
      retry = !ec;
      co_return ec;
    }
    case SSL_ERROR_ZERO_RETURN:  // the peer's close_notify
      co_return asio::error::eof;
    case SSL_ERROR_SSL:
      co_return failure;
    default:  // kedge's BIO never asks to wait for writing, nor makes system calls
      co_return asio::ssl::error::stream_truncated;
  }
}

asio::awaitable<error_code> Stream::handshake() {
  while (true) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) co_return co_await flush();  // the last flight and the session tickets
    bool retry = false;
    error_code ec = co_await service(r, retry);
    if (!retry) co_return ec ? ec : asio::ssl::error::stream_truncated;
  }
}

asio::awaitable<Stream::IoResult> Stream::read_some(asio::mutable_buffer buffer) {
  if (buffer.size() == 0) co_return IoResult{};
  while (true) {
    ERR_clear_error();
    size_t n = 0;
    int r = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    if (r == 1) {
      // A record that asks for an answer (a TLS 1.3 key update) left output: send it, unless
      // a write is sending already (it sends this too).
      if (!out_.empty() && !send_running_) co_await flush();
      co_return IoResult{error_code{}, n};
    }
    bool retry = false;
    error_code ec = co_await service(r, retry);
    if (!retry) co_return IoResult{ec ? ec : asio::ssl::error::stream_truncated, 0};
  }
}

asio::awaitable<Stream::IoResult> Stream::write(asio::const_buffer buffer) {
  const char* p = static_cast<const char*>(buffer.data());
  size_t left = buffer.size();
  while (left > 0) {
    if (send_error_) co_return IoResult{send_error_, buffer.size() - left};
    ERR_clear_error();
    size_t n = 0;
    direct_ = left <= SSL3_RT_MAX_PLAIN_LENGTH && !send_running_ && out_.empty();
    int r = SSL_write_ex(ssl_, p, left, &n);
    direct_ = false;
    if (r == 1) {
      p += n;
      left -= n;
      continue;
    }
    bool retry = false;
    error_code ec = co_await service(r, retry);
    if (!retry) co_return IoResult{ec ? ec : asio::ssl::error::stream_truncated, 0};
  }
  error_code ec = co_await flush();
  co_return IoResult{ec, ec ? 0 : buffer.size()};
}

}  // namespace kedge::tls
