#include "model/snapshot.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>

namespace kedge::model {

std::optional<SocketAddress> SocketAddress::parse(std::string_view ip, uint16_t port) {
  SocketAddress a;
  a.port = port;
  std::string text(ip);
  if (inet_pton(AF_INET, text.c_str(), a.ip.data()) == 1) return a;
  if (inet_pton(AF_INET6, text.c_str(), a.ip.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

std::string SocketAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, ip.data(), buf, sizeof buf);
  char out[INET6_ADDRSTRLEN + 10];
  std::snprintf(out, sizeof out, v6 ? "[%s]:%u" : "%s:%u", buf, port);
  return out;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  size_t slash = text.find('/');
  auto address = SocketAddress::parse(text.substr(0, slash), 0);
  if (!address) return std::nullopt;
  Cidr c;
  c.v6 = address->v6;
  c.ip = address->ip;
  const int max = c.v6 ? 128 : 32;
  int prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 ||
        !std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      return std::nullopt;
    prefix = std::stoi(std::string(digits));
    if (prefix > max) return std::nullopt;
  }
  c.prefix = static_cast<uint8_t>(prefix);
  return c;
}

bool Cidr::contains(bool address_v6, const std::array<uint8_t, 16>& address) const {
  if (address_v6 != v6) return false;
  int full = prefix / 8;
  if (!std::equal(ip.begin(), ip.begin() + full, address.begin())) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip[full] & mask) == (address[full] & mask);
}

bool Route::matches(std::string_view p) const {
  if (match == MatchType::Exact) return p == path;
  if (path == "/") return true;
  // Prefix matches element by element: "/foo" matches "/foo", "/foo/" and "/foo/bar".
  return p.starts_with(path) && (p.size() == path.size() || p[path.size()] == '/');
}

const Route* VirtualHost::match(std::string_view path) const {
  for (const Route& r : routes)
    if (r.matches(path)) return &r;
  return nullptr;
}

bool normalize_host(std::string_view host, std::string& out) {
  // uri-host [":" port] (RFC 9110 §7.2), with a DNS name or an IP literal as uri-host: anything
  // else (userinfo, lists, paths, spaces, a second port) cannot name a host and is refused.
  out.clear();
  if (host.size() > 255) return false;
  std::string_view port;
  bool literal = !host.empty() && host.front() == '[';
  if (literal) {  // IPv6 literal
    auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') return false;
      port = host.substr(close + 2);
    }
    host = host.substr(0, close + 1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (port.size() > 5) return false;
  for (char c : port)
    if (c < '0' || c > '9') return false;
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // "example.com." is the same
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    char lower = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    bool name_char = (lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '.' || c == '_';
    bool literal_char =
        literal && ((lower >= 'a' && lower <= 'f') || (c >= '0' && c <= '9') || c == ':' ||
                    c == '.' || (c == '[' && i == 0) || (c == ']' && i + 1 == host.size()));
    if (literal ? !literal_char : !name_char) return false;
    out += lower;
  }
  return true;
}

const VirtualHost* Snapshot::find_host(std::string_view host) const {
  // A Host header value as sent (any case, a port, a trailing dot) is normalised here; the proxy
  // passes it normalised already, so the request path never pays for the copy.
  std::string normalized;
  bool raw = !host.empty() && host.back() == '.';
  for (char c : host) raw = raw || (c >= 'A' && c <= 'Z') || c == ':';
  if (raw) {
    if (!normalize_host(host, normalized)) return &any_host;
    host = normalized;
  }
  if (const VirtualHost* vh = exact_hosts.find(host)) return vh;
  if (auto dot = host.find('.'); dot != std::string_view::npos && dot > 0) {
    if (const VirtualHost* vh = wildcard_hosts.find(host.substr(dot))) return vh;
  }
  return &any_host;
}

std::vector<ClusterConstPtr> Snapshot::clusters() const {
  std::vector<ClusterConstPtr> out;
  auto add = [&](const VirtualHost& vh) {
    for (const Route& r : vh.routes)
      if (r.cluster) out.push_back(r.cluster);
  };
  exact_hosts.for_each([&](const std::string&, const VirtualHost& vh) { add(vh); });
  wildcard_hosts.for_each([&](const std::string&, const VirtualHost& vh) { add(vh); });
  add(any_host);
  if (default_backend && default_backend->cluster) out.push_back(default_backend->cluster);
  std::sort(out.begin(), out.end(), [](const ClusterConstPtr& a, const ClusterConstPtr& b) {
    return std::tie(a->name, a->lb, a) < std::tie(b->name, b->lb, b);
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

const tls::ServerContext* Snapshot::certificate_for(std::string_view name) const {
  std::string lower;
  if (!name.empty() && normalize_host(name, lower)) {
    if (const auto* c = certificates.find(lower)) return c->get();
    if (auto dot = lower.find('.'); dot != std::string::npos && dot > 0) {
      std::string wildcard = "*" + lower.substr(dot);
      if (const auto* c = certificates.find(wildcard)) return c->get();
    }
  }
  return default_certificate.get();
}

const Route* Snapshot::route(std::string_view host, std::string_view path) const {
  if (const VirtualHost* vh = find_host(host))
    if (const Route* r = vh->match(path)) return r;
  return default_backend ? &*default_backend : nullptr;
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
bool unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
/// Whether a "." or ".." segment touches a backslash (raw or %5C): kedge matches "\\" as data,
/// but an upstream that takes it for "/" would resolve the dot segment to another path.
bool dot_segment_at_backslash(std::string_view p) {
  auto backslash = [&](size_t i) -> size_t {  // length of a backslash at i, raw or encoded
    if (p[i] == '\\') return 1;
    if (p[i] == '%' && i + 2 < p.size() && p[i + 1] == '5' && (p[i + 2] | 0x20) == 'c') return 3;
    return 0;
  };
  size_t start = 0;
  bool after_backslash = false;
  for (size_t i = 0; i <= p.size(); ++i) {
    size_t bs = i < p.size() ? backslash(i) : 0;
    if (i < p.size() && p[i] != '/' && bs == 0) continue;
    std::string_view piece = p.substr(start, i - start);
    if ((after_backslash || bs) && (piece == "." || piece == "..")) return true;
    after_backslash = bs != 0;
    start = i + (bs ? bs : 1);
    if (bs) i += bs - 1;
  }
  return false;
}
}  // namespace

bool normalize_path(std::string_view target, std::string& out) {
  out.clear();
  if (auto q = target.find_first_of("?#"); q != std::string_view::npos)
    target = target.substr(0, q);
  if (target.empty() || target.front() != '/') return false;
  // Decode unreserved escapes and encoded slashes first, so "/%61dmin" routes like "/admin" and
  // "/admin%2Fx" like "/admin/x" (as nginx matches locations): an upstream that decodes them
  // must not find a path under another rule than the one kedge chose.
  std::string decoded;
  decoded.reserve(target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == '%' && i + 2 < target.size()) {
      int hi = hex_value(target[i + 1]), lo = hex_value(target[i + 2]);
      if (hi >= 0 && lo >= 0 &&
          (unreserved(static_cast<unsigned char>(hi * 16 + lo)) || hi * 16 + lo == '/')) {
        decoded += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    decoded += target[i];
  }
  if (dot_segment_at_backslash(decoded)) return false;
  // Merge slashes and remove dot segments (RFC 3986 §5.2.4), segment by segment.
  std::vector<std::string_view> segments;
  std::string_view rest(decoded);
  bool trailing = false;
  while (!rest.empty()) {
    rest.remove_prefix(1);  // the '/'
    auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    trailing = rest.empty() && (seg.empty() || seg == "." || seg == "..");
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
      continue;
    }
    segments.push_back(seg);
  }
  for (auto seg : segments) {
    out += '/';
    out += seg;
  }
  if (out.empty() || trailing) out += '/';
  return true;
}

}  // namespace kedge::model
