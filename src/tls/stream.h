#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <tuple>

namespace kedge::tls {

/// The server side of TLS over a TCP socket. OpenSSL reads records from this object's input
/// buffer and writes them through a BIO of kedge's own, so each byte is copied once between the
/// socket's buffers and OpenSSL's (asio's ssl::stream goes through a BIO pair and copies it three
/// times), and a write is one send.
///
/// A write of at most one record, with nothing queued before it, goes from OpenSSL's record
/// buffer straight to the socket (`direct_`): no copy into the output buffer and no round of the
/// event loop. What the socket does not take then is queued and sent as before. Longer writes
/// collect their records and send them at once, so that they are not one system call each.
///
/// One read and one write may be in flight at once (HTTP/2 reads and writes concurrently):
/// whichever call has output to send sends it, the other waits for it if it needs it sent.
/// Thread: owning worker only.
class Stream {
 public:
  using IoResult = std::tuple<boost::system::error_code, size_t>;

  /// `ctx` is the context the handshake starts with (an SNI callback may switch it).
  Stream(boost::asio::ip::tcp::socket socket, SSL_CTX* ctx);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  boost::asio::ip::tcp::socket& socket() { return socket_; }
  SSL* native_handle() { return ssl_; }

  boost::asio::awaitable<boost::system::error_code> handshake();
  /// Some decrypted bytes (at least one), or an error (eof after the peer's close_notify or
  /// a closed socket).
  boost::asio::awaitable<IoResult> read_some(boost::asio::mutable_buffer buffer);
  /// All of `buffer`, encrypted and handed to the kernel.
  boost::asio::awaitable<IoResult> write(boost::asio::const_buffer buffer);

 private:
  static int bio_read(BIO* bio, char* data, int size);
  static int bio_write(BIO* bio, const char* data, int size);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

  /// Receives more ciphertext for OpenSSL.
  boost::asio::awaitable<boost::system::error_code> fill();
  /// Sends the output OpenSSL produced; waits for a send already running by the other caller.
  boost::asio::awaitable<boost::system::error_code> flush();
  /// What an OpenSSL call that returned `result` <= 0 wants; sends pending output first.
  boost::asio::awaitable<boost::system::error_code> service(int result, bool& retry);

  boost::asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  std::unique_ptr<char[]> in_;
  size_t in_begin_ = 0, in_end_ = 0;
  std::string out_;      // ciphertext OpenSSL wrote, not yet being sent
  bool direct_ = false;  // bio_write may send to the socket itself (set within write() only)
  std::string sending_;  // ciphertext being sent now
  bool send_running_ = false;
  boost::system::error_code send_error_;
  boost::asio::steady_timer sent_;  // cancelled when a send ends
};

}  // namespace kedge::tls
