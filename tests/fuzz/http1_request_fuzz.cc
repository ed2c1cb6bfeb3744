// HTTP/1 requests as a downstream connection delivers them: heads, Content-Length and chunked
// bodies with extensions and trailers, pipelining, upgrades, in reads of any size.
// Each input runs twice, with the parser's fast path and with llhttp alone: both must agree.
#include "parser_driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  kedge::fuzz::drive_both(kedge::http1::Parser::Type::Request, data + 1, size - 1, data[0], false);
  return 0;
}
