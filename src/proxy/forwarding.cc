#include "proxy/forwarding.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace kedge::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

bool is_hop_by_hop(std::string_view name) {
  using http1::iequals;
  switch (name.size()) {  // by length first: most names are rejected without a comparison
    case 2:
      return iequals(name, "te");
    case 6:
      return iequals(name, "expect");
    case 7:
      return iequals(name, "trailer") || iequals(name, "upgrade");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 14:
      return iequals(name, "http2-settings");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

bool is_forwarding_header(std::string_view name) {
  using http1::iequals;
  if (name.size() < 8 || (name[0] | 0x20) != 'x' || name[1] != '-') return false;
  switch (name.size()) {
    case 8:
      return iequals(name, "x-scheme");
    case 9:
      return iequals(name, "x-real-ip");
    case 12:
      return iequals(name, "x-request-id");
    case 15:
      return iequals(name, "x-forwarded-for");
    case 16:
      return iequals(name, "x-forwarded-host") || iequals(name, "x-forwarded-port");
    case 17:
      return iequals(name, "x-forwarded-proto");
    default:
      return false;
  }
}

bool idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

tcp::endpoint to_asio(const model::SocketAddress& a) {
  if (a.v6) {
    asio::ip::address_v6::bytes_type b;
    std::copy(a.ip.begin(), a.ip.end(), b.begin());
    return {asio::ip::address_v6(b), a.port};
  }
  asio::ip::address_v4::bytes_type b;
  std::copy(a.ip.begin(), a.ip.begin() + 4, b.begin());
  return {asio::ip::address_v4(b), a.port};
}

void append_status_line(std::string& out, int status, std::string_view reason) {
  char digits[12];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
  out.append("HTTP/1.1 ").append(digits, end).push_back(' ');
  out.append(reason).append("\r\n");
}

namespace {
/// "000102...ff": the two hex digits of each byte value.
constexpr std::array<char, 512> make_hex_pairs() {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> t{};
  for (int b = 0; b < 256; ++b) {
    t[2 * b] = kHex[b >> 4];
    t[2 * b + 1] = kHex[b & 15];
  }
  return t;
}
constexpr std::array<char, 512> kHexPairs = make_hex_pairs();

void put_hex(uint64_t x, char* out) {  // 16 digits, most significant first
  for (int i = 7; i >= 0; --i, x >>= 8) std::memcpy(out + 2 * i, &kHexPairs[2 * (x & 0xff)], 2);
}
}  // namespace

void make_request_id(uint64_t high, uint64_t low, std::string& out) {
  out.resize(32);
  put_hex(high, out.data());
  put_hex(low, out.data() + 16);
}

void append_forwarding_fields(std::string& out, std::string_view request_id,
                              std::string_view client_ip, std::string_view host, uint16_t port,
                              std::string_view scheme) {
  char digits[8];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, port);
  std::string_view port_text(digits, static_cast<size_t>(end - digits));
  for (std::string_view part :
       {std::string_view("X-Request-ID: "), request_id, std::string_view("\r\nX-Real-IP: "),
        client_ip, std::string_view("\r\nX-Forwarded-For: "), client_ip,
        std::string_view("\r\nX-Forwarded-Host: "), host,
        std::string_view("\r\nX-Forwarded-Port: "), port_text,
        std::string_view("\r\nX-Forwarded-Proto: "), scheme, std::string_view("\r\nX-Scheme: "),
        scheme, std::string_view("\r\n\r\n")})
    out.append(part);
}

EndToEnd::EndToEnd(const http1::MessageHead& head) : head_(head) {
  head.any_token("connection", [&](std::string_view item) {
    if (is_hop_by_hop(item)) return false;  // dropped anyway
    if (n_listed_ == listed_.size()) return many_ = true;
    listed_[n_listed_++] = item;
    return false;
  });
}

bool EndToEnd::keeps(std::string_view name) const {
  if (is_hop_by_hop(name)) return false;
  if (many_) return !head_.has_token("connection", name);
  for (size_t k = 0; k < n_listed_; ++k)
    if (http1::iequals(listed_[k], name)) return false;
  return true;
}

void copy_end_to_end_fields(const http1::MessageHead& head, std::string& out, bool drop_forwarding,
                            std::string_view drop_name) {
  const EndToEnd end_to_end(head);
  for (size_t i = 0; i < head.size(); ++i) {
    std::string_view name = head.name(i);
    if (!end_to_end.keeps(name)) continue;
    if (drop_forwarding && (is_forwarding_header(name) || http1::iequals(name, "host")))
      continue;  // requests: set by the caller
    if (!drop_name.empty() && http1::iequals(name, drop_name)) continue;
    std::string_view value = head.value(i);
    size_t at = out.size();
    out.resize(at + name.size() + value.size() + 4);
    char* p = out.data() + at;
    std::memcpy(p, name.data(), name.size());
    p += name.size();
    *p++ = ':';
    *p++ = ' ';
    std::memcpy(p, value.data(), value.size());
    p += value.size();
    *p++ = '\r';
    *p = '\n';
  }
}

ClientAddress client_address(const boost::asio::ip::tcp::endpoint& remote) {
  ClientAddress out;
  auto addr = remote.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, addr.to_v6());
  out.text = addr.to_string();
  if (addr.is_v4()) {
    auto bytes = addr.to_v4().to_bytes();
    std::copy(bytes.begin(), bytes.end(), out.address.ip.begin());
  } else {
    out.address.v6 = true;
    out.address.ip = addr.to_v6().to_bytes();
  }
  out.address.port = remote.port();
  return out;
}

}  // namespace kedge::proxy
