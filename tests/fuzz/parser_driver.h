#pragma once
// Drives http1::Parser over fuzz input the way the proxy does: bytes arrive in reads of varying
// size, unconsumed bytes stay buffered, the caller acts after each head and each message. Checks
// the invariants the proxy relies on; any violation aborts (a finding).

#include "http1/parser.h"
#include "model/snapshot.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace kedge::fuzz {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

/// What the proxy reads of a head: every accessor, and the framing decisions it takes.
inline void inspect_head(const http1::Parser& p, size_t max_head) {
  const http1::MessageHead& h = p.head();
  FUZZ_CHECK(h.bytes() <= max_head);
  size_t fields = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    bool found = false;
    h.get(h.name(i), &found);
    FUZZ_CHECK(found);
    FUZZ_CHECK(h.count(h.name(i)) >= 1);
    fields += h.name(i).size() + h.value(i).size();
  }
  FUZZ_CHECK(fields <= h.bytes());
  (void)h.has_token("connection", "close");
  (void)h.has_token("upgrade", "websocket");
  if (p.chunked()) FUZZ_CHECK(h.count("transfer-encoding") > 0);
  std::string host, path;
  if (model::normalize_host(h.get("host"), host)) FUZZ_CHECK(host.size() <= 255);
  if (model::normalize_path(h.target(), path)) {
    FUZZ_CHECK(!path.empty() && path.front() == '/');
    FUZZ_CHECK(path.find("//") == std::string::npos);
  }
}

/// What a caller can see of the parser after a head: written to `log` to compare two runs.
inline void log_head(const http1::Parser& p, std::string& log) {
  const http1::MessageHead& h = p.head();
  log += "head ";
  log.append(h.method()).append(" ").append(h.target()).append(" ").append(h.reason());
  log += " " + std::to_string(h.status) + " " + std::to_string(h.version_major) + "." +
         std::to_string(h.version_minor) + "\n";
  for (size_t i = 0; i < h.size(); ++i)
    log.append(h.name(i)).append(": ").append(h.value(i)) += '\n';
  log += "keep-alive " + std::to_string(p.keep_alive()) + " chunked " +
         std::to_string(p.chunked()) + " upgrade " + std::to_string(p.upgrade()) + " until-close " +
         std::to_string(p.body_until_close()) + " length " +
         (p.content_length() ? std::to_string(*p.content_length()) : "-") + "\n";
}

/// Feeds `data` in reads whose sizes follow `seed`. `no_body`: for responses, the request was HEAD.
/// `fast`: whether the parser may take its fast path. Appends what it saw to `log`.
inline void drive(http1::Parser::Type type, const uint8_t* data, size_t size, uint8_t seed,
                  bool no_body, bool fast, std::string& log) {
  constexpr size_t kMaxHead = 2048;
  http1::Parser parser(type, kMaxHead);
  parser.set_no_body(no_body);
  parser.set_fast_path(fast);
  std::string in;  // the connection's read buffer
  size_t offset = 0;
  uint64_t body = 0;
  bool head_seen = false;
  size_t read_size = seed % 4 == 0 ? size : 1 + seed / 4;  // one read, or many small ones
  bool again = false;  // after a head, execute once more even without input (bodyless answers)
  while (true) {
    if (in.empty() && !again) {
      if (offset == size) break;
      size_t n = std::min(read_size, size - offset);
      in.append(reinterpret_cast<const char*>(data) + offset, n);
      offset += n;
    }
    again = false;
    auto step = parser.execute(in.data(), in.size());
    FUZZ_CHECK(step.consumed <= in.size());
    log += "step " + std::to_string(static_cast<int>(step.event)) + " " +
           std::to_string(step.consumed) + "\n";
    for (const auto& span : parser.body_spans()) {
      FUZZ_CHECK(span.data >= in.data() && span.data + span.size <= in.data() + in.size());
      body += span.size;
      log.append("body ").append(span.data, span.size) += '\n';
    }
    if (step.event == http1::Parser::Event::Error) {
      int status = parser.error_status();
      log += "error " + std::to_string(status) + "\n";
      FUZZ_CHECK(status == 400 || status == 414 || status == 431 || status == 501);
      FUZZ_CHECK(parser.error_reason() != nullptr);
      return;  // the proxy answers and closes
    }
    in.erase(0, step.consumed);
    switch (step.event) {
      case http1::Parser::Event::HeadersComplete:
        FUZZ_CHECK(!head_seen);
        head_seen = true;
        body = 0;
        inspect_head(parser, kMaxHead);
        log_head(parser, log);
        parser.resume();
        again = true;
        break;
      case http1::Parser::Event::MessageComplete:
        FUZZ_CHECK(head_seen);
        FUZZ_CHECK(body == parser.body_bytes());
        if (auto cl = parser.content_length();
            cl && !parser.chunked() && !no_body && type == http1::Parser::Type::Request)
          FUZZ_CHECK(body == *cl);
        if (parser.upgrade()) return;  // the proxy tunnels from here on
        head_seen = false;
        parser.resume();
        log += "after keep-alive " + std::to_string(parser.keep_alive()) + " length " +
               (parser.content_length() ? std::to_string(*parser.content_length()) : "-") + "\n";
        break;
      case http1::Parser::Event::NeedMore:
        FUZZ_CHECK(in.empty());  // an incomplete message is consumed whole
        break;
      case http1::Parser::Event::Error:
        break;
    }
  }
  auto end = parser.finish();
  log += "finish " + std::to_string(static_cast<int>(end.event)) + "\n";
  if (end.event == http1::Parser::Event::MessageComplete) FUZZ_CHECK(head_seen);
}

/// Drives the input with the parser's fast path and without it: llhttp alone must see the same.
inline void drive_both(http1::Parser::Type type, const uint8_t* data, size_t size, uint8_t seed,
                       bool no_body) {
  std::string with, without;
  drive(type, data, size, seed, no_body, true, with);
  drive(type, data, size, seed, no_body, false, without);
  if (with != without) {
    std::fprintf(stderr, "fast path:\n%s\nllhttp alone:\n%s\n", with.c_str(), without.c_str());
    std::abort();
  }
}

}  // namespace kedge::fuzz
