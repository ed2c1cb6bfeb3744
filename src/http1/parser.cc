#include "http1/parser.h"

namespace kedge::http1 {

Parser::Parser(Type type, size_t max_head_bytes) : type_(type), max_head_bytes_(max_head_bytes) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = on_message_begin;
  settings_.on_method = on_method;
  settings_.on_url = on_url;
  settings_.on_status = on_status;
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
  reset();
}

void Parser::reset() {
  llhttp_init(&parser_, type_ == Type::Request ? HTTP_REQUEST : HTTP_RESPONSE, &settings_);
  parser_.data = this;
  head_.clear();
  content_length_ = 0;
  body_bytes_ = 0;
  body_spans_.clear();
  pending_ = Event::NeedMore;
  no_body_ = false;
  head_reported_ = false;
  deferred_complete_ = false;
  in_trailers_ = false;
  trailer_bytes_ = 0;
  error_status_ = 400;
  user_error_ = nullptr;
}

int Parser::check_head_size(size_t n) {
  if (head_.bytes() + n > max_head_bytes_) {
    error_status_ = 431;
    user_error_ = "request header fields too large";
    return HPE_USER;
  }
  return 0;
}

int Parser::on_message_begin(llhttp_t* p) {
  Parser& s = self(p);
  s.head_reported_ = false;
  s.head_.clear();
  s.body_bytes_ = 0;
  s.content_length_ = 0;
  s.in_trailers_ = false;
  s.trailer_bytes_ = 0;
  return 0;
}

int Parser::on_method(llhttp_t* p, const char* at, size_t n) {
  Parser& s = self(p);
  if (int e = s.check_head_size(n)) return e;
  s.head_.append_method({at, n});
  return 0;
}

int Parser::on_url(llhttp_t* p, const char* at, size_t n) {
  Parser& s = self(p);
  if (s.head_.bytes() + n > s.max_head_bytes_) {
    s.error_status_ = 414;
    s.user_error_ = "request target too long";
    return HPE_USER;
  }
  s.head_.append_target({at, n});
  return 0;
}

int Parser::on_status(llhttp_t* p, const char* at, size_t n) {
  Parser& s = self(p);
  if (int e = s.check_head_size(n)) return e;
  s.head_.append_reason({at, n});
  return 0;
}

int Parser::check_trailer_size(size_t n) {
  trailer_bytes_ += n;
  if (trailer_bytes_ > max_head_bytes_) {
    error_status_ = 400;
    user_error_ = "trailer section too large";
    return HPE_USER;
  }
  return 0;
}

int Parser::on_header_field(llhttp_t* p, const char* at, size_t n) {
  Parser& s = self(p);
  // llhttp's loose mode lets a space into a field name ("X A: b"): not a token (RFC 9110 §5.1),
  // and a name another hop may read differently.
  if (std::string_view(at, n).find(' ') != std::string_view::npos) {
    s.user_error_ = "invalid header field name";
    return HPE_USER;
  }
  if (s.in_trailers_) return s.check_trailer_size(n);  // trailers are not part of the head
  if (int e = s.check_head_size(n)) return e;
  s.head_.append_name({at, n});
  return 0;
}

int Parser::on_header_value(llhttp_t* p, const char* at, size_t n) {
  Parser& s = self(p);
  if (s.in_trailers_) return s.check_trailer_size(n);
  if (int e = s.check_head_size(n)) return e;
  s.head_.append_value({at, n});
  return 0;
}

int Parser::on_headers_complete(llhttp_t* p) {
  Parser& s = self(p);
  s.head_.version_major = p->http_major;
  s.head_.version_minor = p->http_minor;
  s.head_.status = p->status_code;
  s.content_length_ = p->content_length;
  s.pending_ = Event::HeadersComplete;
  s.in_trailers_ = true;  // header callbacks from now on are the chunked trailer section
  // 1 tells llhttp that this response has no body: the answer to HEAD, and (RFC 9112 §6.3)
  // 1xx, 204 and 304 whatever their Content-Length says, which llhttp 8 would otherwise read.
  // llhttp cannot both skip the body and pause here, so execute() reports the head first and
  // the end of message next (on the following execute, even an empty one).
  if (p->type == HTTP_RESPONSE) {
    int status = p->status_code;
    bool bodyless_status =
        (status >= 100 && status < 200 && status != 101) || status == 204 || status == 304;
    if (s.no_body_ || bodyless_status) return 1;
  }
  return HPE_PAUSED;
}

int Parser::on_body(llhttp_t* p, const char* at, size_t n) {
  Parser& s = self(p);
  s.body_bytes_ += n;
  s.body_spans_.push_back({at, n});
  return 0;
}

int Parser::on_message_complete(llhttp_t* p) {
  self(p).pending_ = Event::MessageComplete;
  return HPE_PAUSED;
}

Parser::Step Parser::execute(const char* data, size_t size) {
  body_spans_.clear();
  if (deferred_complete_) {
    deferred_complete_ = false;
    return {Event::MessageComplete, 0};
  }
  pending_ = Event::NeedMore;
  llhttp_errno_t err = llhttp_execute(&parser_, data, size);
  if (err == HPE_OK) return {Event::NeedMore, size};
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    size_t consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    Event event = err == HPE_PAUSED_UPGRADE ? Event::MessageComplete : pending_;
    if (event == Event::MessageComplete && !head_reported_) deferred_complete_ = true;
    if (event == Event::HeadersComplete || deferred_complete_) {
      head_reported_ = true;
      return {Event::HeadersComplete, consumed};
    }
    return {event, consumed};
  }
  if (err != HPE_USER) {
    error_status_ = err == HPE_INVALID_TRANSFER_ENCODING ? 501 : 400;
    if (err == HPE_INVALID_TRANSFER_ENCODING && parser_.flags & F_CONTENT_LENGTH)
      error_status_ = 400;
  }
  return {Event::Error, 0};
}

void Parser::resume() {
  if (deferred_complete_) return;
  if (llhttp_get_errno(&parser_) == HPE_PAUSED_UPGRADE)
    llhttp_resume_after_upgrade(&parser_);
  else
    llhttp_resume(&parser_);
}

Parser::Step Parser::finish() {
  body_spans_.clear();
  pending_ = Event::NeedMore;
  llhttp_errno_t err = llhttp_finish(&parser_);
  if (err == HPE_OK && pending_ == Event::MessageComplete) return {Event::MessageComplete, 0};
  if (err == HPE_PAUSED) return {pending_, 0};
  if (err == HPE_OK) return {Event::NeedMore, 0};
  return {Event::Error, 0};
}

const char* Parser::error_reason() const {
  if (user_error_) return user_error_;
  const char* r = llhttp_get_error_reason(&parser_);
  return r ? r : "malformed message";
}

}  // namespace kedge::http1
