#pragma once

#include "common/byte_buffer.h"
#include "http1/message_head.h"
#include "model/snapshot.h"

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace kedge::proxy {

/// Request and response fields that describe one hop, never forwarded (RFC 9110 §7.6.1).
bool is_hop_by_hop(std::string_view name);
/// The X-Forwarded-* family that kedge sets itself (untrusted from clients, as ingress-nginx's
/// default use-forwarded-headers=false).
bool is_forwarding_header(std::string_view name);
/// Methods that may be resent to another endpoint after a failure.
bool idempotent(std::string_view method);

/// The free tail of `b` as a read buffer. write_ptr() may move pending bytes to the front, which
/// changes writable(): it must run first (function arguments have no evaluation order).
inline boost::asio::mutable_buffer free_space(ByteBuffer& b) {
  char* p = b.write_ptr();
  return boost::asio::buffer(p, b.writable());
}

boost::asio::ip::tcp::endpoint to_asio(const model::SocketAddress& a);

/// The client's address (an IPv4-mapped IPv6 address as IPv4; port 0 when the socket has no
/// peer), and the same as text for X-Forwarded-For and X-Real-IP.
struct ClientAddress {
  model::SocketAddress address;
  std::string text;
};
ClientAddress client_address(const boost::asio::ip::tcp::endpoint& remote);

/// Which fields of a head may cross this hop: none that is hop-by-hop, and none that a Connection
/// field names (RFC 9110 §7.6.1). The names Connection lists are gathered once per head (most
/// heads have no Connection field, or one that lists only keep-alive or close).
class EndToEnd {
 public:
  explicit EndToEnd(const http1::MessageHead& head);
  bool keeps(std::string_view name) const;

 private:
  const http1::MessageHead& head_;
  std::array<std::string_view, 8> listed_;
  size_t n_listed_ = 0;
  bool many_ = false;  // more than fit: ask the head for each field instead
};

/// Appends the fields of `head` that may cross this hop, honouring `Connection: name` too.
/// `drop_forwarding` (requests) also drops Host and the forwarding fields, which the caller sets.
/// Appends "HTTP/1.1 STATUS REASON\r\n".
void append_status_line(std::string& out, int status, std::string_view reason);

/// A new request id in `out`: 32 lowercase hex digits (ingress-nginx's $req_id format), the
/// first 16 from `high`, the rest from `low`.
void make_request_id(uint64_t high, uint64_t low, std::string& out);
/// The same from two draws of `rng`.
inline void make_request_id(std::mt19937_64& rng, std::string& out) {
  uint64_t high = rng();
  make_request_id(high, rng(), out);
}

/// Appends the fields kedge sets on every request it forwards (X-Request-ID, X-Real-IP, the
/// X-Forwarded family, X-Scheme) and the blank line that ends the head.
void append_forwarding_fields(std::string& out, std::string_view request_id,
                              std::string_view client_ip, std::string_view host, uint16_t port,
                              std::string_view scheme);

void copy_end_to_end_fields(const http1::MessageHead& head, std::string& out, bool drop_forwarding,
                            std::string_view drop_name = {});

}  // namespace kedge::proxy
