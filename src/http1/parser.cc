#include "http1/parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace kedge::http1 {

namespace {

// What the fast path accepts in each place is a subset of what llhttp accepts there.

constexpr std::array<bool, 256> make_tchars() {  // RFC 9110 §5.6.2
  std::array<bool, 256> c{};
  for (int b = '0'; b <= '9'; ++b) c[b] = true;
  for (int b = 'a'; b <= 'z'; ++b) c[b] = true;
  for (int b = 'A'; b <= 'Z'; ++b) c[b] = true;
  for (char b : std::string_view("!#$%&'*+-.^_`|~")) c[static_cast<unsigned char>(b)] = true;
  return c;
}
constexpr std::array<bool, 256> kTchars = make_tchars();

bool is_tchar(char c) { return kTchars[static_cast<unsigned char>(c)]; }

/// The first byte from `p` on that is not in (lo, 0x7f) and not a tab where `tab` allows one:
/// the end of a request target (lo = ' ') or of a field value or reason (lo = 0x1f, with tabs).
/// 16 bytes at a time where SSE2 is there; bytes from 0x80 up end the run, as do controls.
template <char kLo, bool kTab>
const char* skip_run(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i lo = _mm_set1_epi8(kLo), del = _mm_set1_epi8(0x7f), tab = _mm_set1_epi8('\t');
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, del));
    if (kTab) ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, tab));
    unsigned bad = static_cast<unsigned>(_mm_movemask_epi8(ok)) ^ 0xffffu;
    if (bad != 0) return p + __builtin_ctz(bad);
    p += 16;
  }
#endif
  while (p < end && ((*p > kLo && *p < 0x7f) || (kTab && *p == '\t'))) ++p;
  return p;
}
const char* skip_target(const char* p, const char* end) { return skip_run<' ', false>(p, end); }

/// The first byte from `p` on that is not a tchar: the end of a method or a field name. Letters,
/// digits and '-' go 16 at a time where SSE2 is there; the table decides the rest.
const char* skip_token(const char* p, const char* end) {
#ifdef __SSE2__
  const __m128i case_bit = _mm_set1_epi8(0x20), a = _mm_set1_epi8('a' - 1),
                z = _mm_set1_epi8('z' + 1), zero = _mm_set1_epi8('0' - 1),
                nine = _mm_set1_epi8('9' + 1), dash = _mm_set1_epi8('-');
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i lower = _mm_or_si128(v, case_bit);
    __m128i ok =
        _mm_or_si128(_mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(lower, a), _mm_cmplt_epi8(lower, z)),
                                  _mm_and_si128(_mm_cmpgt_epi8(v, zero), _mm_cmplt_epi8(v, nine))),
                     _mm_cmpeq_epi8(v, dash));
    unsigned bad = static_cast<unsigned>(_mm_movemask_epi8(ok)) ^ 0xffffu;
    if (bad == 0) {
      p += 16;
      continue;
    }
    p += __builtin_ctz(bad);
    if (!is_tchar(*p)) return p;
    ++p;  // another tchar ('_', '.', ...): on past it
  }
#endif
  while (p < end && is_tchar(*p)) ++p;
  return p;
}
const char* skip_value(const char* p, const char* end) { return skip_run<0x1f, true>(p, end); }

bool known_method(std::string_view m) {
  switch (m.size()) {
    case 3:
      return m == "GET" || m == "PUT";
    case 4:
      return m == "HEAD" || m == "POST";
    case 5:
      return m == "PATCH";
    case 6:
      return m == "DELETE";
    case 7:
      return m == "OPTIONS";
    default:
      return false;
  }
}

/// "HTTP/1.0" or "HTTP/1.1" at `p` (8 bytes available): the minor version, or -1.
int version_at(const char* p) {
  if (std::memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1')) return -1;
  return p[7] - '0';
}

}  // namespace

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
  last_ = Event::NeedMore;
  phase_ = Phase::Start;
  at_boundary_ = true;
  body_left_ = 0;
  fast_ = false;
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

size_t Parser::scan_head(const char* data, size_t size) {
  const char* p = data;
  const char* end = data + std::min(size, max_head_bytes_);
  auto at = [data](const char* q) { return static_cast<uint32_t>(q - data); };
  // head_ is filled as the scan goes. If the fast path declines, llhttp starts the message over
  // and clears it first (on_message_begin), so nothing half-done is ever seen.
  head_.clear();
  int minor;
  if (type_ == Type::Request) {
    const char* method = p;
    p = skip_token(p, end);
    if (p == end || *p != ' ' || !known_method({method, static_cast<size_t>(p - method)})) return 0;
    head_.method_ = {0, at(p)};
    const char* target = ++p;
    if (p == end || *p != '/') return 0;
    p = skip_target(p, end);
    head_.target_ = {at(target), at(p) - at(target)};
    if (end - p < 11 || *p != ' ' || (minor = version_at(p + 1)) < 0) return 0;
    p += 9;
  } else {
    if (end - p < 13 || (minor = version_at(p)) < 0 || p[8] != ' ') return 0;
    int status = 0;
    for (int i = 9; i < 12; ++i) {
      if (p[i] < '0' || p[i] > '9') return 0;
      status = status * 10 + (p[i] - '0');
    }
    // 1xx heads and 101 (a switch of protocols) stay with llhttp, as do odd codes.
    if (status < 200 || status > 599 || p[12] != ' ') return 0;
    head_.status = status;
    const char* reason = p += 13;
    p = skip_value(p, end);
    head_.reason_ = {at(reason), at(p) - at(reason)};
  }
  if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return 0;
  p += 2;

  // The header fields.
  uint64_t length = 0;
  bool has_length = false, close = false, keep_alive = false, has_connection = false;
  if (head_.fields_.capacity() < MessageHead::kTypicalFields)
    head_.fields_.reserve(MessageHead::kTypicalFields);
  while (true) {
    if (p == end) return 0;
    if (*p == '\r') break;
    const char* name = p;
    p = skip_token(p, end);
    if (p == end || *p != ':' || p == name) return 0;
    std::string_view n(name, static_cast<size_t>(p - name));
    ++p;
    while (p < end && (*p == ' ' || *p == '\t')) ++p;
    const char* value = p;
    p = skip_value(p, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return 0;
    std::string_view v(value, static_cast<size_t>(p - value));
    if (!v.empty() && (v.back() == ' ' || v.back() == '\t')) return 0;  // llhttp's to trim
    p += 2;
    head_.fields_.push_back({{at(name), static_cast<uint32_t>(n.size())},
                             {at(value), static_cast<uint32_t>(v.size())}});
    // The fields llhttp reads itself: the fast path takes only their plainest forms.
    switch (n.size()) {
      case 7:   // upgrade
      case 16:  // proxy-connection (llhttp reads it as Connection)
      case 17:  // transfer-encoding
        if (iequals(n, "upgrade") || iequals(n, "proxy-connection") ||
            iequals(n, "transfer-encoding"))
          return 0;
        break;
      case 10:
        if (!iequals(n, "connection")) break;
        if (has_connection) return 0;
        has_connection = true;
        close = iequals(v, "close");
        keep_alive = iequals(v, "keep-alive");
        if (!close && !keep_alive) return 0;
        break;
      case 14:
        if (!iequals(n, "content-length")) break;
        if (has_length || v.empty() || v.size() > 15) return 0;
        for (char c : v) {
          if (c < '0' || c > '9') return 0;
          length = length * 10 + static_cast<uint64_t>(c - '0');
        }
        has_length = true;
        break;
      default:
        break;
    }
  }
  if (end - p < 2 || p[1] != '\n') return 0;
  p += 2;

  uint64_t body = length;
  if (type_ == Type::Response && (no_body_ || head_.status == 204 || head_.status == 304))
    body = 0;
  else if (type_ == Type::Response && !has_length)
    return 0;  // a body until close: llhttp's

  // Taken: one copy of the head, which the spans index.
  head_.storage_.assign(data, static_cast<size_t>(p - data));
  head_.version_minor = static_cast<uint8_t>(minor);
  fast_ = true;
  fast_has_length_ = has_length;
  fast_keep_alive_ = minor == 1 ? !close : keep_alive;
  content_length_ = length;
  body_left_ = body;
  body_bytes_ = 0;
  return static_cast<size_t>(p - data);
}

Parser::Step Parser::execute(const char* data, size_t size) {
  body_spans_.clear();
  switch (phase_) {
    case Phase::Start:
      if (size == 0) break;
      if (fast_path_) {
        if (size_t n = scan_head(data, size)) {
          phase_ = Phase::FastHead;
          at_boundary_ = false;
          return {Event::HeadersComplete, n};
        }
      }
      phase_ = Phase::Llhttp;
      fast_ = false;
      at_boundary_ = false;
      break;
    case Phase::Llhttp:
      if (size > 0) at_boundary_ = false;
      break;
    case Phase::FastHead:
      return {Event::HeadersComplete, 0};  // not resumed yet
    case Phase::FastBody: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(body_left_, size));
      if (n > 0) body_spans_.push_back({data, n});
      body_bytes_ += n;
      body_left_ -= n;
      if (body_left_ > 0) return {Event::NeedMore, n};
      phase_ = Phase::FastDone;
      return {Event::MessageComplete, n};
    }
    case Phase::FastDone:
      return {Event::MessageComplete, 0};
    case Phase::Closed:
      return {Event::NeedMore, size};
  }
  if (deferred_complete_) {
    deferred_complete_ = false;
    last_ = Event::MessageComplete;
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
      last_ = Event::HeadersComplete;
      return {Event::HeadersComplete, consumed};
    }
    last_ = event;
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
  switch (phase_) {
    case Phase::FastHead:
      phase_ = Phase::FastBody;
      return;
    case Phase::FastDone:
      phase_ = fast_keep_alive_ ? Phase::Start : Phase::Closed;
      at_boundary_ = true;
      return;
    case Phase::Llhttp:
      break;
    default:
      return;  // nothing is paused
  }
  if (deferred_complete_) return;
  if (llhttp_get_errno(&parser_) == HPE_PAUSED_UPGRADE) {
    llhttp_resume_after_upgrade(&parser_);
    return;  // the connection is a tunnel now, or llhttp's to refuse
  }
  llhttp_resume(&parser_);
  if (last_ != Event::MessageComplete) return;
  at_boundary_ = true;
  // If the connection stays, llhttp stands at the next message's start.
  if (keep_alive() && !upgrade()) phase_ = Phase::Start;
}

Parser::Step Parser::finish() {
  body_spans_.clear();
  // Between messages the input may end. (llhttp would only agree after one more execute: it
  // settles a message's end when it next runs.)
  if (at_boundary_) return {Event::NeedMore, 0};
  switch (phase_) {
    case Phase::FastBody:
      user_error_ = "connection closed inside a body";
      return {Event::Error, 0};
    case Phase::FastHead:
    case Phase::FastDone:
    case Phase::Closed:
      return {Event::NeedMore, 0};
    default:
      break;
  }
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
