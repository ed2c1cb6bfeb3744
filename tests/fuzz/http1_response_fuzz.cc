// HTTP/1 responses as an upstream connection delivers them: status lines, 1xx/204/304, answers
// to HEAD, Content-Length, chunked and close-delimited bodies, trailers.
// Each input runs twice, with the parser's fast path and with llhttp alone: both must agree.
#include "parser_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  bool head_request = (data[0] & 0x80) != 0;
  kedge::fuzz::drive_both(kedge::http1::Parser::Type::Response, data + 1, size - 1, data[0] & 0x7f,
                          head_request);
  return 0;
}
