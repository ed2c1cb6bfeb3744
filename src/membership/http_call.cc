#include "membership/http_call.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kedge::membership {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

/// Waits until fd is ready for `events` or the deadline passes.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  while (true) {
    int n = poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

std::string dechunk(const std::string& in) {
  std::string out;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t eol = in.find("\r\n", pos);
    if (eol == std::string::npos) break;
    size_t size = std::strtoul(in.substr(pos, eol - pos).c_str(), nullptr, 16);
    if (size == 0) break;
    out.append(in, eol + 2, size);
    pos = eol + 2 + size + 2;
  }
  return out;
}

}  // namespace

Result<std::pair<std::string, uint16_t>> parse_http_url(const std::string& url) {
  const std::string scheme = "http://";
  if (!url.starts_with(scheme)) return fail("expected http://HOST:PORT, got \"" + url + "\"");
  std::string rest = url.substr(scheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  auto colon = rest.rfind(':');
  std::string host = colon == std::string::npos ? rest : rest.substr(0, colon);
  int port = colon == std::string::npos ? 80 : std::atoi(rest.substr(colon + 1).c_str());
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1 || port <= 0 || port > 65535)
    return fail("expected http://IPV4:PORT, got \"" + url + "\"");
  return std::pair{host, static_cast<uint16_t>(port)};
}

Result<ApiReply> http_call(const std::string& host, uint16_t port, const std::string& method,
                           const std::string& target, const std::string& body,
                           const std::string& token, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &to.sin_addr) != 1) return fail("bad address " + host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(fmt::format("socket: {}", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)
    return fail(fmt::format("connect {}:{}: {}", host, port, std::strerror(errno)));
  if (!wait_for(fd, POLLOUT, deadline)) return fail("connect timed out");
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return fail(fmt::format("connect {}:{}: {}", host, port, std::strerror(err)));
  std::string request = fmt::format(
      "{} {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: application/json\r\nConnection: close\r\n"
      "User-Agent: kedge\r\n{}{}Content-Length: {}\r\n\r\n{}",
      method, target, host, port, token.empty() ? "" : "Authorization: Bearer " + token + "\r\n",
      body.empty() ? "" : "Content-Type: application/json\r\n", body.size(), body);
  size_t sent = 0;
  while (sent < request.size()) {
    if (!wait_for(fd, POLLOUT, deadline)) return fail("send timed out");
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return fail(fmt::format("send: {}", std::strerror(errno)));
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[16384];
  while (true) {
    if (!wait_for(fd, POLLIN, deadline)) return fail("answer timed out");
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return fail(fmt::format("recv: {}", std::strerror(errno)));
    if (n > 0) response.append(buf, static_cast<size_t>(n));
    if (response.size() > (64u << 20)) return fail("answer too large");
  }
  auto head_end = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/1.") || head_end == std::string::npos || response.size() < 12)
    return fail("not an HTTP answer");
  ApiReply reply;
  reply.status = std::atoi(response.substr(9, 3).c_str());
  std::string head = response.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  reply.body = response.substr(head_end + 4);
  if (head.find("transfer-encoding: chunked") != std::string::npos)
    reply.body = dechunk(reply.body);
  return reply;
}

}  // namespace kedge::membership
