#include "proxy/local_reply.h"

#include <fmt/format.h>

namespace kedge::proxy {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

std::string local_reply(int status, bool close, std::string_view request_id, bool head_only) {
  std::string body = fmt::format("{} {}\n", status, reason_phrase(status));
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nServer: kedge\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: {}\r\n",
      status, reason_phrase(status), body.size());
  if (!request_id.empty()) out += fmt::format("X-Request-ID: {}\r\n", request_id);
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += body;
  return out;
}

}  // namespace kedge::proxy
