#pragma once

#include "http1/message_head.h"

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kedge::http1 {

/// An llhttp-backed HTTP/1 parser for one connection direction: bytes in, events out. It pauses
/// at the end of the head and at the end of each message so the caller can act between them;
/// bodies are reported as spans into the caller's buffer (valid until the next `execute`).
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

  const MessageHead& head() const { return head_; }
  bool keep_alive() const { return llhttp_should_keep_alive(&parser_) != 0; }
  bool chunked() const { return (parser_.flags & F_CHUNKED) != 0; }
  bool upgrade() const { return parser_.upgrade != 0; }
  std::optional<uint64_t> content_length() const {
    if (parser_.flags & F_CONTENT_LENGTH) return content_length_;
    return std::nullopt;
  }
  /// Whether the body runs until the connection closes (a response without length).
  bool body_until_close() const { return llhttp_message_needs_eof(&parser_) != 0; }
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

  llhttp_t parser_;
  llhttp_settings_t settings_;
  Type type_;
  MessageHead head_;
  size_t max_head_bytes_;
  uint64_t content_length_ = 0;
  uint64_t body_bytes_ = 0;
  std::vector<Span> body_spans_;
  Event pending_ = Event::NeedMore;
  bool no_body_ = false;
  bool head_reported_ = false;
  bool deferred_complete_ = false;
  bool in_trailers_ = false;  // the head is complete: header fields now are trailers (ignored)
  size_t trailer_bytes_ = 0;  // bounded like the head
  int error_status_ = 400;
  const char* user_error_ = nullptr;
};

}  // namespace kedge::http1
