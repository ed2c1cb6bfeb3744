#include "proxy/forwarding.h"

#include <algorithm>

namespace kedge::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection",        "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
      "transfer-encoding", "expect",     "http2-settings"};
  for (auto n : kNames)
    if (http1::iequals(name, n)) return true;
  return false;
}

bool is_forwarding_header(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
      "x-real-ip",       "x-request-id",      "x-scheme"};
  for (auto n : kNames)
    if (http1::iequals(name, n)) return true;
  return false;
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

void copy_end_to_end_fields(const http1::MessageHead& head, std::string& out, bool drop_forwarding,
                            std::string_view drop_name) {
  for (size_t i = 0; i < head.size(); ++i) {
    std::string_view name = head.name(i);
    if (is_hop_by_hop(name) || (drop_forwarding && is_forwarding_header(name))) continue;
    if (drop_forwarding && http1::iequals(name, "host")) continue;  // requests: set by the caller
    if (!drop_name.empty() && http1::iequals(name, drop_name)) continue;
    if (head.has_token("connection", name)) continue;
    out.append(name);
    out.append(": ");
    out.append(head.value(i));
    out.append("\r\n");
  }
}

ClientAddress client_address(const boost::asio::ip::tcp::socket& socket) {
  ClientAddress out;
  boost::system::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (ec) return out;
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
