#pragma once

#include "http1/message_head.h"

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kedge::http1 {

/// An HTTP/1 parser for one connection direction: bytes in, events out. It pauses at the end of
/// the head and at the end of each message so the caller can act between them; bodies are
/// reported as spans into the caller's buffer (valid until the next `execute`).
///
/// llhttp parses every message, except that a message whose whole head arrives in one `execute`
/// at a message boundary is first offered to a fast path (`scan_head`). It takes only the
/// plainest heads: a known method, an origin-form target, HTTP/1.0 or 1.1, token field names,
/// CRLF line ends, at most one Content-Length and no Transfer-Encoding or Upgrade. Anything
/// else, valid or not, goes to llhttp from its first byte, so the fast path only ever gives the
/// answer llhttp would give (the unit tests and the fuzzers compare the two on every input).
/// No sockets, no timers. Thread: owning connection only.
class Parser {
 public:
  enum class Type { Request, Response };
  enum class Event {
    NeedMore,         // all input consumed, message not finished
    HeadersComplete,  // head() is ready; call resume() and execute the rest
    MessageComplete,  // message ended at `consumed`; call resume() for the next one
    Error,            // error_status() / error_reason() say why
  };
  struct Step {
    Event event;
    size_t consumed;
  };

  Parser(Type type, size_t max_head_bytes);
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  /// Starts over, as if new, for another connection's messages; keeps what it has allocated.
  void reset();

  Step execute(const char* data, size_t size);
  /// Continues after HeadersComplete or MessageComplete. After MessageComplete the next message
  /// starts with a cleared head.
  void resume();
  /// The connection ended: a body delimited by close is complete (MessageComplete) or not.
  Step finish();
  /// For responses: the matching request was HEAD (or the response has no body by its status).
  void set_no_body(bool no_body) { no_body_ = no_body; }
  /// Off: llhttp parses every message. For the tests that compare the two paths.
  void set_fast_path(bool on) { fast_path_ = on; }
  /// Whether the fast path parsed the current (or last) message.
  bool fast_path_taken() const { return fast_; }

  const MessageHead& head() const { return head_; }
  bool keep_alive() const {
    return fast_ ? fast_keep_alive_ : llhttp_should_keep_alive(&parser_) != 0;
  }
  bool chunked() const { return !fast_ && (parser_.flags & F_CHUNKED) != 0; }
  bool upgrade() const { return !fast_ && parser_.upgrade != 0; }
  std::optional<uint64_t> content_length() const {
    if (fast_ ? fast_has_length_ : (parser_.flags & F_CONTENT_LENGTH) != 0) return content_length_;
    return std::nullopt;
  }
  /// Whether the body runs until the connection closes (a response without length).
  bool body_until_close() const { return !fast_ && llhttp_message_needs_eof(&parser_) != 0; }
  uint64_t body_bytes() const { return body_bytes_; }

  /// Body spans seen by the last `execute` (after decoding chunked framing).
  struct Span {
    const char* data;
    size_t size;
  };
  const std::vector<Span>& body_spans() const { return body_spans_; }

  /// The status a server should answer after an Error: 400, 431 (head too large) or 501.
  int error_status() const { return error_status_; }
  const char* error_reason() const;

 private:
  static Parser& self(llhttp_t* p) { return *static_cast<Parser*>(p->data); }
  static int on_message_begin(llhttp_t* p);
  static int on_method(llhttp_t* p, const char* at, size_t n);
  static int on_url(llhttp_t* p, const char* at, size_t n);
  static int on_status(llhttp_t* p, const char* at, size_t n);
  static int on_header_field(llhttp_t* p, const char* at, size_t n);
  static int on_header_value(llhttp_t* p, const char* at, size_t n);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t n);
  static int on_message_complete(llhttp_t* p);
  int check_head_size(size_t n);
  int check_trailer_size(size_t n);
  /// The fast path: the length of the head at `data` if it takes the message, else 0.
  size_t scan_head(const char* data, size_t size);

  /// Where the parser is. llhttp is only ever fed whole messages, from their first byte, so it
  /// stands at a message boundary whenever the fast path has one.
  enum class Phase : uint8_t {
    Start,     // between messages: the next may take the fast path
    Llhttp,    // llhttp has this message (and the connection, after a close or an upgrade)
    FastHead,  // the fast path reported the head; resume() not yet called
    FastBody,  // the fast path: body_left_ bytes of the body are to come
    FastDone,  // the fast path reported the end of the message; resume() not yet called
    Closed,    // after a fast message without keep-alive: what follows is ignored, as llhttp does
  };

  llhttp_t parser_;
  llhttp_settings_t settings_;
  Type type_;
  MessageHead head_;
  size_t max_head_bytes_;
  uint64_t content_length_ = 0;
  uint64_t body_bytes_ = 0;
  std::vector<Span> body_spans_;
  Event pending_ = Event::NeedMore;
  Event last_ = Event::NeedMore;  // llhttp's last event, for resume()
  Phase phase_ = Phase::Start;
  bool at_boundary_ = true;  // no byte of a message executed since the last one ended
  uint64_t body_left_ = 0;   // fast path
  bool fast_path_ = true;
  bool fast_ = false;  // the fast path parsed the current (or last) message
  bool fast_keep_alive_ = false;
  bool fast_has_length_ = false;
  bool no_body_ = false;
  bool head_reported_ = false;
  bool deferred_complete_ = false;
  bool in_trailers_ = false;  // the head is complete: header fields now are trailers (ignored)
  size_t trailer_bytes_ = 0;  // bounded like the head
  int error_status_ = 400;
  const char* user_error_ = nullptr;
};

}  // namespace kedge::http1
