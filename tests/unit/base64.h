#pragma once

#include <openssl/evp.h>

#include <string>

namespace kedge::testing_support {

/// Base64 of `s`, as Secret data carries it.
inline std::string base64(const std::string& s) {
  std::string out(4 * ((s.size() + 2) / 3), '\0');
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                  reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  return out;
}

}  // namespace kedge::testing_support
