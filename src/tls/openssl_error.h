#pragma once

#include <openssl/err.h>

#include <string>

namespace kedge::tls {

/// The oldest error on this thread's OpenSSL error queue, as text; the queue is cleared.
inline std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (!e) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace kedge::tls
