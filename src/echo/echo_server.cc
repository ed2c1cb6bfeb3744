#include "echo/echo_server.h"

#include "http1/parser.h"
#include "proxy/local_reply.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <nlohmann/json.hpp>

namespace kedge::echo {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

std::string base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  return out;
}

int64_t query_int(std::string_view target, std::string_view key, int64_t fallback) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return fallback;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    if (kv.starts_with(key) && kv.size() > key.size() && kv[key.size()] == '=')
      return std::strtoll(std::string(kv.substr(key.size() + 1)).c_str(), nullptr, 10);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return fallback;
}

asio::awaitable<void> websocket_echo(tcp::socket& s, std::string pending) {
  std::array<char, 16384> buf;
  while (true) {
    // Frame: 2 header bytes, extended length, 4-byte mask (clients always mask), payload.
    while (true) {
      if (pending.size() >= 2) {
        auto b1 = static_cast<uint8_t>(pending[1]);
        size_t len = b1 & 0x7f, hdr = 2;
        if (len == 126) hdr = 4;
        if (len == 127) hdr = 10;
        bool masked = b1 & 0x80;
        if (pending.size() >= hdr) {
          if (len == 126)
            len = (static_cast<uint8_t>(pending[2]) << 8) | static_cast<uint8_t>(pending[3]);
          if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(pending[2 + i]);
          }
          size_t total = hdr + (masked ? 4 : 0) + len;
          if (len > (64u << 20)) co_return;
          if (pending.size() >= total) break;
        }
      }
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kUseTuple);
      if (ec) co_return;
      pending.append(buf.data(), n);
    }
    auto b0 = static_cast<uint8_t>(pending[0]);
    auto b1 = static_cast<uint8_t>(pending[1]);
    size_t len = b1 & 0x7f, hdr = 2;
    if (len == 126) {
      len = (static_cast<uint8_t>(pending[2]) << 8) | static_cast<uint8_t>(pending[3]);
      hdr = 4;
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(pending[2 + i]);
      hdr = 10;
    }
    bool masked = b1 & 0x80;
    std::string payload = pending.substr(hdr + (masked ? 4 : 0), len);
    if (masked)
      for (size_t i = 0; i < len; ++i) payload[i] ^= pending[hdr + (i % 4)];
    pending.erase(0, hdr + (masked ? 4 : 0) + len);
    uint8_t opcode = b0 & 0x0f;
    if (opcode == 0x9) b0 = (b0 & 0xf0) | 0xA;  // ping → pong
    std::string frame;
    frame += static_cast<char>(b0);
    if (len < 126) {
      frame += static_cast<char>(len);
    } else if (len < 65536) {
      frame += static_cast<char>(126);
      frame += static_cast<char>(len >> 8);
      frame += static_cast<char>(len & 0xff);
    } else {
      frame += static_cast<char>(127);
      for (int i = 7; i >= 0; --i) frame += static_cast<char>((len >> (8 * i)) & 0xff);
    }
    frame += payload;
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(frame), kUseTuple);
    if (wec || opcode == 0x8) co_return;
  }
}

asio::awaitable<void> serve(tcp::socket s, const EchoOptions& options) {
  http1::Parser parser(http1::Parser::Type::Request, 64 * 1024);
  std::array<char, 16384> buf;
  std::string pending;
  boost::system::error_code ignored;
  s.set_option(tcp::no_delay(true), ignored);
  while (true) {
    // Read one request, hashing the body as it streams by.
    SHA256_CTX sha;
    SHA256_Init(&sha);
    bool have_head = false, complete = false;
    nlohmann::json info;
    while (!complete) {
      if (!pending.empty()) {
        auto step = parser.execute(pending.data(), pending.size());
        if (step.event == http1::Parser::Event::Error) {
          std::string bytes = proxy::local_reply(parser.error_status(), true);
          co_await asio::async_write(s, asio::buffer(bytes), kUseTuple);
          co_return;
        }
        for (auto span : parser.body_spans()) SHA256_Update(&sha, span.data, span.size);
        pending.erase(0, step.consumed);
        if (step.event == http1::Parser::Event::HeadersComplete) {
          have_head = true;
          parser.resume();
          const auto& h = parser.head();
          if (parser.upgrade() && h.has_token("upgrade", "websocket")) {
            unsigned char digest[SHA_DIGEST_LENGTH];
            std::string key =
                std::string(h.get("sec-websocket-key")) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
            SHA1(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
            std::string resp = fmt::format(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: {}\r\nX-Echo-Pod: {}\r\n\r\n",
                base64(digest, sizeof digest), options.pod);
            auto [wec, wn] = co_await asio::async_write(s, asio::buffer(resp), kUseTuple);
            if (!wec) co_await websocket_echo(s, std::move(pending));
            co_return;
          }
          continue;
        }
        if (step.event == http1::Parser::Event::MessageComplete) {
          parser.resume();
          complete = true;
          break;
        }
        if (have_head && !parser.chunked() && parser.content_length().value_or(0) == 0) {
          auto end = parser.execute(pending.data(), 0);
          if (end.event == http1::Parser::Event::MessageComplete) {
            parser.resume();
            complete = true;
            break;
          }
        }
      } else if (have_head && !parser.chunked() && parser.content_length().value_or(0) == 0) {
        auto end = parser.execute(pending.data(), 0);
        if (end.event == http1::Parser::Event::MessageComplete) {
          parser.resume();
          complete = true;
          break;
        }
      }
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kUseTuple);
      if (ec) co_return;
      pending.append(buf.data(), n);
    }
    const auto& h = parser.head();
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_Final(digest, &sha);
    std::string hex;
    for (unsigned char c : digest) hex += fmt::format("{:02x}", c);
    nlohmann::json headers = nlohmann::json::object();
    for (size_t i = 0; i < h.size(); ++i) {
      std::string name(h.name(i));
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (headers.contains(name))
        headers[name] = headers[name].get<std::string>() + ", " + std::string(h.value(i));
      else
        headers[name] = std::string(h.value(i));
    }
    info = {{"method", std::string(h.method())},
            {"path", std::string(h.target())},
            {"host", std::string(h.get("host"))},
            {"proto", fmt::format("HTTP/{}.{}", h.version_major, h.version_minor)},
            {"headers", headers},
            {"service", options.name},
            {"pod", options.pod},
            {"namespace", options.namespace_},
            {"body_bytes", parser.body_bytes()},
            {"body_sha256", hex}};
    std::string_view target = h.target();
    int status = static_cast<int>(query_int(target, "status", 200));
    if (status < 100 || status > 999) status = 200;
    int64_t delay = query_int(target, "delay_ms", 0);
    int64_t bytes = query_int(target, "bytes", -1);
    bool keep = parser.keep_alive();
    bool head_only = h.method() == "HEAD";
    if (delay > 0) {
      asio::steady_timer t(s.get_executor(), std::chrono::milliseconds(delay));
      co_await t.async_wait(kUseTuple);
    }
    std::string body = bytes >= 0 ? std::string() : info.dump() + "\n";
    uint64_t length = bytes >= 0 ? static_cast<uint64_t>(bytes) : body.size();
    std::string out = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-Echo-Service: {}\r\n"
        "X-Echo-Pod: {}\r\n{}\r\n",
        status, proxy::reason_phrase(status),
        bytes >= 0 ? "application/octet-stream" : "application/json", length, options.name,
        options.pod, keep ? "" : "Connection: close\r\n");
    if (!head_only && status != 204 && status != 304) out += body;
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), kUseTuple);
    if (wec) co_return;
    if (bytes > 0 && !head_only) {
      std::string chunk(64 * 1024, 'k');
      for (uint64_t left = static_cast<uint64_t>(bytes); left > 0;) {
        size_t n = std::min<uint64_t>(left, chunk.size());
        auto [cec, cn] = co_await asio::async_write(s, asio::buffer(chunk.data(), n), kUseTuple);
        if (cec) co_return;
        left -= n;
      }
    }
    if (!keep) {
      s.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

}  // namespace

int run_echo(const EchoOptions& options) {
  asio::io_context ioc{1};
  auto colon = options.listen.rfind(':');
  if (colon == std::string::npos) {
    spdlog::error("--listen must be ADDR:PORT, got \"{}\"", options.listen);
    return 2;
  }
  std::string host = options.listen.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) {
    spdlog::error("--listen: bad address \"{}\"", host);
    return 2;
  }
  tcp::endpoint ep(addr, static_cast<uint16_t>(std::stoi(options.listen.substr(colon + 1))));
  tcp::acceptor acceptor(ioc);
  acceptor.open(ep.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(ep, ec);
  if (ec) {
    spdlog::error("cannot listen on {}: {}", options.listen, ec.message());
    return 1;
  }
  acceptor.listen();
  spdlog::info("echo service={} pod={} listening on {}", options.name, options.pod, options.listen);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { ioc.stop(); });
  asio::ip::udp::socket udp_socket(ioc);
  if (options.udp) {
    asio::ip::udp::endpoint uep(ep.address(), ep.port());
    udp_socket.open(uep.protocol());
    udp_socket.bind(uep, ec);
    if (ec) {
      spdlog::error("cannot listen on udp {}: {}", options.listen, ec.message());
      return 1;
    }
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          std::array<char, 65536> buf;
          while (true) {
            asio::ip::udp::endpoint from;
            auto [rec, n] =
                co_await udp_socket.async_receive_from(asio::buffer(buf), from, kUseTuple);
            if (rec) continue;
            nlohmann::json reply = {{"service", options.name},
                                    {"pod", options.pod},
                                    {"data", std::string(buf.data(), n)}};
            std::string bytes = reply.dump();
            co_await udp_socket.async_send_to(asio::buffer(bytes), from, kUseTuple);
          }
        },
        asio::detached);
  }
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        while (true) {
          auto [aec, socket] = co_await acceptor.async_accept(kUseTuple);
          if (aec) continue;
          asio::co_spawn(ioc, serve(std::move(socket), options), asio::detached);
        }
      },
      asio::detached);
  ioc.run();
  return 0;
}

}  // namespace kedge::echo
