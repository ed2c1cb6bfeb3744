#include "http1/parser.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kedge::http1 {
namespace {

using Event = Parser::Event;

/// What the parser reported for one message.
struct Message {
  std::string method, target, reason;
  int status = 0;
  int minor = -1;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string body;
  uint64_t body_bytes = 0;
  bool keep_alive = false;
  bool keep_alive_after = false;  // keep_alive() once the message is complete and resumed
  bool chunked = false;
  bool upgrade = false;
  bool until_close = false;
  std::optional<uint64_t> length;
  bool complete = false;
  bool operator==(const Message&) const = default;
};

struct Trace {
  std::vector<Message> messages;
  std::vector<Event> events;  // HeadersComplete / MessageComplete / Error, in order
  bool error = false;
  int error_status = 0;
  bool operator==(const Trace& o) const {
    return messages == o.messages && events == o.events && error == o.error &&
           error_status == o.error_status;
  }
  std::vector<bool> fast;  // per message: whether the fast path parsed it (not compared)
};

/// Drives a Parser the way the proxy does: append what arrives, execute until NeedMore, resume
/// after HeadersComplete and MessageComplete, and execute again even when nothing is left (a
/// message without body completes on an empty execute). `chunk` = 0 feeds the whole input.
Trace drive(Parser& p, std::string_view input, size_t chunk = 0, bool finish = false) {
  Trace run;
  std::string pending;
  size_t fed = 0;
  Message* current = nullptr;
  auto collect_body = [&] {
    for (auto span : p.body_spans()) {
      EXPECT_NE(current, nullptr);
      if (current) current->body.append(span.data, span.size);
    }
  };
  while (!run.error) {
    size_t n = chunk == 0 ? input.size() - fed : std::min(chunk, input.size() - fed);
    pending.append(input.substr(fed, n));
    fed += n;
    size_t off = 0;
    while (true) {
      auto step = p.execute(pending.data() + off, pending.size() - off);
      if (step.event == Event::Error) {
        run.error = true;
        run.error_status = p.error_status();
        run.events.push_back(Event::Error);
        break;
      }
      collect_body();
      off += step.consumed;
      if (step.event == Event::NeedMore) {
        EXPECT_EQ(off, pending.size());
        break;
      }
      run.events.push_back(step.event);
      if (step.event == Event::HeadersComplete) {
        run.messages.emplace_back();
        current = &run.messages.back();
        const MessageHead& h = p.head();
        current->method = h.method();
        current->target = h.target();
        current->reason = h.reason();
        current->status = h.status;
        current->minor = h.version_minor;
        for (size_t i = 0; i < h.size(); ++i) current->fields.emplace_back(h.name(i), h.value(i));
        current->keep_alive = p.keep_alive();
        current->chunked = p.chunked();
        current->upgrade = p.upgrade();
        current->until_close = p.body_until_close();
        current->length = p.content_length();
        run.fast.push_back(p.fast_path_taken());
      } else {
        EXPECT_NE(current, nullptr);
        if (current) {
          current->complete = true;
          current->body_bytes = p.body_bytes();
        }
      }
      p.resume();
      if (step.event == Event::MessageComplete && current)
        current->keep_alive_after = p.keep_alive();
    }
    pending.erase(0, off);
    if (fed == input.size()) break;
  }
  if (finish && !run.error) {
    auto step = p.finish();
    collect_body();
    if (step.event == Event::MessageComplete && current) {
      current->complete = true;
      current->body_bytes = p.body_bytes();
      run.events.push_back(Event::MessageComplete);
    }
  }
  return run;
}

struct FeedMode {
  const char* name;
  size_t chunk;
};
constexpr FeedMode kModes[] = {{"whole", 0}, {"bytewise", 1}, {"by7", 7}};

// ---------------------------------------------------------------------------------------------
// Requests

TEST(ParserRequest, GetWithoutBodyCompletesInEveryFeedMode) {
  constexpr std::string_view kReq = "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Two: 2\r\n\r\n";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Request, 8192);
    Trace r = drive(p, kReq, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 1u);
    const Message& m = r.messages[0];
    EXPECT_EQ(m.method, "GET");
    EXPECT_EQ(m.target, "/a?b=c");
    EXPECT_EQ(m.minor, 1);
    ASSERT_EQ(m.fields.size(), 2u);
    EXPECT_EQ(m.fields[0], (std::pair<std::string, std::string>{"Host", "example.com"}));
    EXPECT_EQ(m.fields[1], (std::pair<std::string, std::string>{"X-Two", "2"}));
    EXPECT_TRUE(m.complete);
    EXPECT_EQ(m.body, "");
    EXPECT_EQ(m.body_bytes, 0u);
    EXPECT_EQ(r.events, (std::vector<Event>{Event::HeadersComplete, Event::MessageComplete}));
  }
}

TEST(ParserRequest, PipelinedRequestsInOneBuffer) {
  constexpr std::string_view kTwo =
      "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /second HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz"
      "GET /third HTTP/1.1\r\nHost: c\r\n\r\n";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Request, 8192);
    Trace r = drive(p, kTwo, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 3u);
    EXPECT_EQ(r.messages[0].target, "/first");
    EXPECT_EQ(r.messages[1].target, "/second");
    EXPECT_EQ(r.messages[1].method, "POST");
    EXPECT_EQ(r.messages[1].body, "xyz");
    EXPECT_EQ(r.messages[2].target, "/third");
    ASSERT_EQ(r.messages[2].fields.size(), 1u);
    EXPECT_EQ(r.messages[2].fields[0].second, "c");  // the head was cleared between messages
    for (const auto& m : r.messages) EXPECT_TRUE(m.complete) << m.target;
  }
}

TEST(ParserRequest, ContentLengthBody) {
  constexpr std::string_view kReq =
      "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Request, 8192);
    Trace r = drive(p, kReq, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.messages[0].body, "hello world");
    EXPECT_EQ(r.messages[0].body_bytes, 11u);
    EXPECT_FALSE(r.messages[0].chunked);
    EXPECT_TRUE(r.messages[0].complete);
  }
  Parser p(Parser::Type::Request, 8192);
  auto step = p.execute(kReq.data(), kReq.size());
  ASSERT_EQ(step.event, Event::HeadersComplete);
  EXPECT_EQ(p.content_length(), std::optional<uint64_t>(11));
}

TEST(ParserRequest, ChunkedBodyIsDecoded) {
  constexpr std::string_view kReq =
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Request, 8192);
    Trace r = drive(p, kReq, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_TRUE(r.messages[0].chunked);
    EXPECT_EQ(r.messages[0].body, "hello world");
    EXPECT_EQ(r.messages[0].body_bytes, 11u);
    EXPECT_TRUE(r.messages[0].complete);
  }
  Parser p(Parser::Type::Request, 8192);
  auto step = p.execute(kReq.data(), kReq.size());
  ASSERT_EQ(step.event, Event::HeadersComplete);
  EXPECT_EQ(p.content_length(), std::nullopt);
}

// The proxy's contract: after HeadersComplete + resume(), a message without body reports
// MessageComplete on the next execute, even when that execute gets no bytes.
TEST(ParserRequest, BodylessMessageCompletesOnEmptyExecute) {
  constexpr std::string_view kReq = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  Parser p(Parser::Type::Request, 8192);
  auto head = p.execute(kReq.data(), kReq.size());
  ASSERT_EQ(head.event, Event::HeadersComplete);
  EXPECT_EQ(head.consumed, kReq.size());
  p.resume();
  auto end = p.execute(kReq.data() + kReq.size(), 0);
  EXPECT_EQ(end.event, Event::MessageComplete);
  EXPECT_EQ(end.consumed, 0u);
  p.resume();
  auto idle = p.execute(kReq.data() + kReq.size(), 0);
  EXPECT_EQ(idle.event, Event::NeedMore);
}

TEST(ParserRequest, KeepAlive) {
  struct Case {
    const char* request;
    bool keep_alive;
  } cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: close\r\n\r\n", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.request);
    Parser p(Parser::Type::Request, 8192);
    std::string_view in = c.request;
    auto step = p.execute(in.data(), in.size());
    ASSERT_EQ(step.event, Event::HeadersComplete);
    EXPECT_EQ(p.keep_alive(), c.keep_alive);
  }
}

TEST(ParserRequest, UpgradeRequestEndsAtTheHead) {
  constexpr std::string_view kReq =
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
      "\x81\x05hello";
  Parser p(Parser::Type::Request, 8192);
  auto head = p.execute(kReq.data(), kReq.size());
  ASSERT_EQ(head.event, Event::HeadersComplete);
  EXPECT_TRUE(p.upgrade());
  p.resume();
  auto end = p.execute(kReq.data() + head.consumed, kReq.size() - head.consumed);
  EXPECT_EQ(end.event, Event::MessageComplete);
  EXPECT_EQ(end.consumed, 0u);  // the frame bytes belong to the tunnel
  EXPECT_EQ(p.body_bytes(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Request errors

struct ErrorCase {
  const char* name;
  std::string input;
  size_t max_head;
  int status;
};

class ParserRequestError : public testing::TestWithParam<ErrorCase> {};

TEST_P(ParserRequestError, Rejected) {
  const ErrorCase& c = GetParam();
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Request, c.max_head);
    Trace r = drive(p, c.input, mode.chunk);
    EXPECT_TRUE(r.error);
    EXPECT_EQ(r.error_status, c.status);
    ASSERT_FALSE(r.events.empty());
    EXPECT_EQ(r.events.back(), Event::Error);
    EXPECT_EQ(std::count(r.events.begin(), r.events.end(), Event::MessageComplete), 0);
    EXPECT_NE(std::string(p.error_reason()), "");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ParserRequestError,
    testing::Values(
        ErrorCase{"ContentLengthAndTransferEncoding",
                  "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  8192, 400},
        ErrorCase{"TwoDifferentContentLengths",
                  "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                  "hello!",
                  8192, 400},
        ErrorCase{"BadChunkSize",
                  "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n",
                  8192, 400},
        ErrorCase{"GarbageRequestLine", "HELLO\r\n\r\n", 8192, 400},
        ErrorCase{"HeaderBlockTooLarge",
                  "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(200, 'x') + "\r\n\r\n", 128,
                  431},
        ErrorCase{"ManyHeadersTooLarge",
                  [] {
                    std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
                    for (int i = 0; i < 40; ++i) s += "X-H" + std::to_string(i) + ": v\r\n";
                    return s + "\r\n";
                  }(),
                  128, 431},
        ErrorCase{"UrlTooLong", "GET /" + std::string(300, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n",
                  128, 414}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(ParserRequest, HeadJustUnderTheLimitIsAccepted) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(50, 'x') + "\r\n\r\n";
  Parser p(Parser::Type::Request, 128);
  Trace r = drive(p, req, 1);
  EXPECT_FALSE(r.error);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].fields[1].second, std::string(50, 'x'));
}

// ---------------------------------------------------------------------------------------------
// Responses

TEST(ParserResponse, ContentLength) {
  constexpr std::string_view kResp =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Response, 8192);
    Trace r = drive(p, kResp, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.messages[0].status, 200);
    EXPECT_EQ(r.messages[0].reason, "OK");
    EXPECT_EQ(r.messages[0].body, "hello");
    EXPECT_EQ(r.messages[0].body_bytes, 5u);
    EXPECT_TRUE(r.messages[0].keep_alive);
    EXPECT_TRUE(r.messages[0].complete);
  }
}

TEST(ParserResponse, ChunkedWithTrailers) {
  constexpr std::string_view kResp =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
      "4\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Checksum: abc\r\n\r\n"
      "HTTP/1.1 204 No Content\r\n\r\n";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Response, 8192);
    Trace r = drive(p, kResp, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 2u);
    EXPECT_TRUE(r.messages[0].chunked);
    EXPECT_EQ(r.messages[0].body, "Wikipedia");
    EXPECT_EQ(r.messages[0].body_bytes, 9u);
    EXPECT_TRUE(r.messages[0].complete);
    EXPECT_EQ(r.messages[1].status, 204);
    EXPECT_TRUE(r.messages[1].complete);
  }
}

TEST(ParserResponse, TrailersDoNotBecomeHeaderFields) {
  constexpr std::string_view kResp =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nok\r\n0\r\nX-Checksum: abc\r\nContent-Length: 7\r\n\r\n";
  Parser p(Parser::Type::Response, 8192);
  auto step = p.execute(kResp.data(), kResp.size());
  ASSERT_EQ(step.event, Event::HeadersComplete);
  p.resume();
  auto end = p.execute(kResp.data() + step.consumed, kResp.size() - step.consumed);
  ASSERT_EQ(end.event, Event::MessageComplete);
  EXPECT_EQ(p.head().size(), 1u);
  EXPECT_FALSE(p.head().get("x-checksum").size());
  EXPECT_EQ(p.head().count("content-length"), 0u);
  EXPECT_EQ(p.head().status, 200);
}

TEST(ParserResponse, TrailerSectionIsBounded) {
  std::string resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n";
  for (int i = 0; i < 20; ++i) resp += "X-Trailer-" + std::to_string(i) + ": value\r\n";
  resp += "\r\n";
  Parser p(Parser::Type::Response, 128);
  Trace r = drive(p, resp);
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.error_status, 400);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_FALSE(r.messages[0].complete);
}

TEST(ParserResponse, ResetStartsOverAfterAnErrorOrACutMessage) {
  // A pooled connection's parser serves the next connection's responses after reset(): neither
  // a failed parse, nor a message cut mid-body, nor a HEAD's "no body" may carry over.
  Parser p(Parser::Type::Response, 8192);
  p.set_no_body(true);
  Trace bad = drive(p, "HTTP/1.1 abc\r\n\r\n");
  ASSERT_TRUE(bad.error);
  p.reset();
  constexpr std::string_view kCut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-A: 1\r\n\r\nhal";
  Trace cut = drive(p, kCut);
  ASSERT_FALSE(cut.error);
  ASSERT_EQ(cut.messages.size(), 1u);
  EXPECT_EQ(cut.messages[0].body, "hal");
  EXPECT_FALSE(cut.messages[0].complete);
  p.reset();
  constexpr std::string_view kNext = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    p.reset();
    Trace r = drive(p, kNext, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_EQ(r.messages[0].status, 201);
    EXPECT_EQ(r.messages[0].fields.size(), 1u);  // X-A is gone with its message
    EXPECT_EQ(r.messages[0].body, "ok");
    EXPECT_EQ(r.messages[0].body_bytes, 2u);
    EXPECT_TRUE(r.messages[0].complete);
  }
}

TEST(ParserResponse, HeadResponseHasNoBody) {
  // The answer to HEAD announces a length but carries no body; the next response follows.
  constexpr std::string_view kResp =
      "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
      "HTTP/1.1 404 Not Found\r\nContent-Length: 1000\r\n\r\n";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Response, 8192);
    p.set_no_body(true);
    Trace r = drive(p, kResp, mode.chunk);
    ASSERT_FALSE(r.error);
    EXPECT_EQ(r.events, (std::vector<Event>{Event::HeadersComplete, Event::MessageComplete,
                                            Event::HeadersComplete, Event::MessageComplete}));
    ASSERT_EQ(r.messages.size(), 2u);
    EXPECT_EQ(r.messages[0].status, 200);
    EXPECT_EQ(r.messages[0].body, "");
    EXPECT_EQ(r.messages[0].body_bytes, 0u);
    EXPECT_EQ(r.messages[1].status, 404);
    EXPECT_EQ(r.messages[1].body_bytes, 0u);
  }
}

TEST(ParserResponse, HeadResponseStepByStep) {
  constexpr std::string_view kResp = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
  Parser p(Parser::Type::Response, 8192);
  p.set_no_body(true);
  auto head = p.execute(kResp.data(), kResp.size());
  ASSERT_EQ(head.event, Event::HeadersComplete);
  EXPECT_EQ(head.consumed, kResp.size());
  EXPECT_EQ(p.head().status, 200);
  EXPECT_EQ(p.head().get("content-length"), "1000");
  p.resume();
  auto end = p.execute(kResp.data() + kResp.size(), 0);
  EXPECT_EQ(end.event, Event::MessageComplete);
  EXPECT_EQ(end.consumed, 0u);
  EXPECT_TRUE(p.body_spans().empty());
  EXPECT_EQ(p.body_bytes(), 0u);
}

// What http_session does for every response: execute → HeadersComplete, resume, then execute
// the rest (possibly nothing) until MessageComplete.
TEST(ParserResponse, BodylessResponsesCompleteOnEmptyExecute) {
  struct Case {
    const char* name;
    std::string_view response;
    bool no_body;
  } cases[] = {
      {"204", "HTTP/1.1 204 No Content\r\n\r\n", false},
      {"304 with length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false},
      {"zero length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
      {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true},
      {"HEAD chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true},
      {"100", "HTTP/1.1 100 Continue\r\n\r\n", false},
      {"204 chunked", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", false},
      {"103 with length", "HTTP/1.1 103 Early Hints\r\nContent-Length: 3\r\n\r\n", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Parser p(Parser::Type::Response, 8192);
    p.set_no_body(c.no_body);
    auto head = p.execute(c.response.data(), c.response.size());
    ASSERT_EQ(head.event, Event::HeadersComplete);
    EXPECT_EQ(head.consumed, c.response.size());
    EXPECT_FALSE(p.body_until_close());
    p.resume();
    auto end = p.execute(c.response.data() + c.response.size(), 0);
    EXPECT_EQ(end.event, Event::MessageComplete);
    EXPECT_EQ(end.consumed, 0u);
    EXPECT_EQ(p.body_bytes(), 0u);
  }
}

TEST(ParserResponse, NoBodyStatusesIgnoreLength) {
  constexpr std::string_view kResp =
      "HTTP/1.1 204 No Content\r\n\r\n"
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Response, 8192);
    Trace r = drive(p, kResp, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 3u);
    EXPECT_EQ(r.messages[0].status, 204);
    EXPECT_EQ(r.messages[1].status, 304);
    EXPECT_EQ(r.messages[1].body, "");
    EXPECT_EQ(r.messages[2].status, 200);
    EXPECT_EQ(r.messages[2].body, "ok");
    for (const auto& m : r.messages) EXPECT_TRUE(m.complete);
  }
}

TEST(ParserResponse, BodyUntilClose) {
  constexpr std::string_view kResp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Response, 8192);
    Trace r = drive(p, kResp, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 1u);
    EXPECT_FALSE(r.messages[0].complete);  // not before the connection ends
    EXPECT_TRUE(p.body_until_close());
    EXPECT_FALSE(p.keep_alive());
    EXPECT_EQ(r.messages[0].body, "streamed");
    auto end = p.finish();
    EXPECT_EQ(end.event, Event::MessageComplete);
    EXPECT_EQ(p.body_bytes(), 8u);
  }
}

TEST(ParserResponse, TruncatedContentLengthBodyIsNotCompleteAtClose) {
  constexpr std::string_view kResp = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
  Parser p(Parser::Type::Response, 8192);
  Trace r = drive(p, kResp);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_FALSE(r.messages[0].complete);
  EXPECT_NE(p.finish().event, Event::MessageComplete);
}

TEST(ParserResponse, InterimThenFinal) {
  constexpr std::string_view kResp =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Response, 8192);
    Trace r = drive(p, kResp, mode.chunk);
    ASSERT_FALSE(r.error);
    ASSERT_EQ(r.messages.size(), 3u);
    EXPECT_EQ(r.messages[0].status, 100);
    EXPECT_EQ(r.messages[1].status, 103);
    EXPECT_EQ(r.messages[1].fields.size(), 1u);
    EXPECT_EQ(r.messages[2].status, 201);
    EXPECT_EQ(r.messages[2].reason, "Created");
    EXPECT_EQ(r.messages[2].body, "done");
    for (const auto& m : r.messages) EXPECT_TRUE(m.complete);
  }
}

TEST(ParserResponse, KeepAlive) {
  struct Case {
    const char* response;
    bool keep_alive;
  } cases[] = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
      {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.response);
    Parser p(Parser::Type::Response, 8192);
    std::string_view in = c.response;
    ASSERT_EQ(p.execute(in.data(), in.size()).event, Event::HeadersComplete);
    EXPECT_EQ(p.keep_alive(), c.keep_alive);
  }
}

TEST(ParserResponse, BadChunkSizeIsAnError) {
  constexpr std::string_view kResp =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nnope\r\n";
  Parser p(Parser::Type::Response, 8192);
  Trace r = drive(p, kResp);
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.error_status, 400);
}

// ---------------------------------------------------------------------------------------------
// MessageHead

TEST(MessageHead, LookupsIgnoreCase) {
  constexpr std::string_view kReq =
      "GET / HTTP/1.1\r\nHost: a\r\nX-Dup: one\r\nx-dup: two\r\n"
      "Connection: Keep-Alive, Upgrade\r\nUpgrade: websocket\r\nX-Empty:\r\nX-Last: z\r\n\r\n";
  for (auto mode : kModes) {
    SCOPED_TRACE(mode.name);
    Parser p(Parser::Type::Request, 8192);
    Trace r = drive(p, kReq, mode.chunk);
    ASSERT_EQ(r.messages.size(), 1u);
    // The head of the last message stays readable after MessageComplete + resume.
    const MessageHead& h = p.head();
    bool found = false;
    EXPECT_EQ(h.get("HOST", &found), "a");
    EXPECT_TRUE(found);
    EXPECT_EQ(h.get("x-DUP"), "one");
    EXPECT_EQ(h.count("X-Dup"), 2u);
    EXPECT_EQ(h.count("x-missing"), 0u);
    EXPECT_EQ(h.get("x-missing", &found), "");
    EXPECT_FALSE(found);
    EXPECT_EQ(h.get("x-empty", &found), "");
    EXPECT_TRUE(found);
    EXPECT_EQ(h.get("x-last"), "z");
    EXPECT_EQ(h.size(), 7u);
    EXPECT_TRUE(h.has_token("connection", "upgrade"));
    EXPECT_TRUE(h.has_token("CONNECTION", "keep-alive"));
    EXPECT_FALSE(h.has_token("connection", "close"));
    EXPECT_FALSE(h.has_token("connection", "keep"));
    EXPECT_TRUE(h.has_token("upgrade", "WebSocket"));
    EXPECT_EQ(h.name(2), "x-dup");  // names keep their case
  }
}

TEST(MessageHead, HasTokenAcrossFieldsAndWhitespace) {
  MessageHead h;
  h.append_method("GET");
  h.append_target("/");
  h.append_name("Connection");
  h.append_value(" close ");
  h.append_name("connection");
  h.append_value("\tfoo ,  Upgrade\t");
  EXPECT_TRUE(h.has_token("Connection", "close"));
  EXPECT_TRUE(h.has_token("Connection", "upgrade"));
  EXPECT_TRUE(h.has_token("Connection", "FOO"));
  EXPECT_FALSE(h.has_token("Connection", "keep-alive"));
  EXPECT_EQ(h.method(), "GET");
  h.clear();
  EXPECT_EQ(h.size(), 0u);
  EXPECT_FALSE(h.has_token("Connection", "close"));
}

TEST(MessageHead, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(iequals("Content-Length", "Content-Lengt"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_TRUE(iequals("", ""));
}

TEST(ParserRequest, SpaceInAFieldNameIsRejected) {
  // llhttp's loose mode accepts "X A: b"; a field name is a token (RFC 9110 §5.1). (A leading
  // space makes the line an obs-fold of the previous field; a trailing one is refused by llhttp.)
  for (std::string name : {"X A", "X  A", "Some Name"}) {
    SCOPED_TRACE(name);
    std::string req = "GET / HTTP/1.1\r\nHost: a\r\n" + name + ": b\r\n\r\n";
    Parser p(Parser::Type::Request, 4096);
    auto step = p.execute(req.data(), req.size());
    EXPECT_EQ(step.event, Parser::Event::Error);
    EXPECT_EQ(p.error_status(), 400);
  }
}

// ---------------------------------------------------------------------------------------------
// The fast path gives llhttp's answer

/// Parses `input` with the fast path and with llhttp alone, fed whole and 7 bytes at a time, and
/// expects the same messages, events and errors from all four. Returns the whole-feed trace.
Trace expect_same_as_llhttp(Parser::Type type, std::string_view input, bool no_body = false) {
  Trace first;
  for (size_t chunk : {size_t{0}, size_t{7}}) {
    Parser fast(type, 512), slow(type, 512);
    slow.set_fast_path(false);
    fast.set_no_body(no_body);
    slow.set_no_body(no_body);
    Trace a = drive(fast, input, chunk, true);
    Trace b = drive(slow, input, chunk, true);
    EXPECT_TRUE(a == b) << "chunk " << chunk << ", input: " << ::testing::PrintToString(input);
    for (bool f : b.fast) EXPECT_FALSE(f);
    if (chunk == 0) first = a;
  }
  return first;
}

TEST(ParserFastPath, TakesPlainMessagesAndReadsThemAsLlhttpDoes) {
  Trace r = expect_same_as_llhttp(
      Parser::Type::Request,
      "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nX-Tab:\tv w\r\n\r\n"
      "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
      "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.fast, (std::vector<bool>{true, true, true}));
  EXPECT_EQ(r.messages[0].target, "/a?b=c");
  ASSERT_EQ(r.messages[0].fields.size(), 3u);
  EXPECT_EQ(r.messages[0].fields[1], (std::pair<std::string, std::string>{"X-Empty", ""}));
  EXPECT_EQ(r.messages[0].fields[2], (std::pair<std::string, std::string>{"X-Tab", "v w"}));
  EXPECT_EQ(r.messages[1].body, "hello");
  EXPECT_EQ(r.messages[1].length, 5u);
  EXPECT_TRUE(r.messages[2].keep_alive);

  Trace s = expect_same_as_llhttp(Parser::Type::Response,
                                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
                                  "HTTP/1.1 204 No Content\r\n\r\n"
                                  "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
                                  "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(s.messages.size(), 4u);
  EXPECT_EQ(s.fast, (std::vector<bool>{true, true, true, true}));
  EXPECT_EQ(s.messages[0].body, "hi");
  EXPECT_EQ(s.messages[2].body_bytes, 0u);
  EXPECT_EQ(s.messages[3].status, 404);
}

TEST(ParserFastPath, HandsAnythingElseToLlhttpAndTakesTheNextPlainMessage) {
  Trace r = expect_same_as_llhttp(
      Parser::Type::Request,
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x\r\n\r\n"
      "GET /last HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.fast, (std::vector<bool>{true, false, false, true}));
  EXPECT_EQ(r.messages[1].body, "abc");
  EXPECT_EQ(r.messages[3].target, "/last");

  // A response without a length runs until close: llhttp's, whatever came before.
  Trace s = expect_same_as_llhttp(Parser::Type::Response,
                                  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
                                  "HTTP/1.1 200 OK\r\n\r\nto the end");
  EXPECT_EQ(s.fast, (std::vector<bool>{true, false}));
  ASSERT_EQ(s.messages.size(), 2u);
  EXPECT_EQ(s.messages[1].body, "to the end");
  EXPECT_TRUE(s.messages[1].until_close);
}

TEST(ParserFastPath, AnswersToHeadAndWhatFollowsAClose) {
  Trace s = expect_same_as_llhttp(Parser::Type::Response,
                                  "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true);
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_TRUE(s.messages[0].complete);
  EXPECT_EQ(s.messages[0].length, 100u);
  EXPECT_EQ(s.fast, (std::vector<bool>{true}));
  // After "Connection: close" llhttp ignores what follows; so does the fast path.
  Trace r = expect_same_as_llhttp(Parser::Type::Request,
                                  "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
                                  "GET /smuggled HTTP/1.1\r\n\r\n");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_FALSE(r.messages[0].keep_alive);
  EXPECT_EQ(r.fast, (std::vector<bool>{true}));
}

// Each template has one '@'. Every byte value, and nothing, goes in its place; with the fast path
// or without, the parser must say the same. The plain letter must take the fast path.
TEST(ParserFastPath, EveryByteInEveryPlaceGetsLlhttpsAnswer) {
  struct Template {
    Parser::Type type;
    std::string_view text;
    int plain;  // a byte the fast path takes there, or -1
    bool no_body = false;
  };
  const auto req = Parser::Type::Request, res = Parser::Type::Response;
  const Template templates[] = {
      {req, "G@T / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'E'},
      {req, "GET@/ HTTP/1.1\r\nHost: a\r\n\r\n", ' '},
      {req, "GET @ HTTP/1.1\r\nHost: a\r\n\r\n", '/'},
      {req, "GET /a@b HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'x'},
      {req, "GET /@ HTTP/1.1\r\n\r\n", 'x'},
      {req, "GET / HTTP/1.1@\n\r\n", '\r'},
      {req, "GET / HTTP/1.@\r\nHost: a\r\n\r\n", '1'},
      {req, "GET / HTTP/@.1\r\nHost: a\r\n\r\n", '1'},
      {req, "GET / HTTP/1.1\r@Host: a\r\n\r\n", '\n'},
      {req, "GET / HTTP/1.1\r\n@Host: a\r\n\r\n", 'X'},
      {req, "GET / HTTP/1.1\r\nHo@st: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'x'},
      {req, "GET / HTTP/1.1\r\nHost@ a\r\n\r\n", ':'},
      {req, "GET / HTTP/1.1\r\nHost:@a\r\n\r\n", ' '},
      {req, "GET / HTTP/1.1\r\nHost: a@b\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'x'},
      {req, "GET / HTTP/1.1\r\nHost: ab@\r\n\r\n", 'x'},
      {req, "GET / HTTP/1.1\r\nHost: a\r\n@: b\r\n\r\n", 'X'},
      {req, "GET / HTTP/1.1\r\nHost: a\r\n\r@", '\n'},
      {req, "GET / HTTP/1.1\r\n\r\n@GET /2 HTTP/1.1\r\n\r\n", 'G'},
      {req, "POST / HTTP/1.1\r\nContent-Length: 1@\r\n\r\n0123456789abcdef", '0'},
      {req, "POST / HTTP/1.1\r\nContent-Length:@2\r\n\r\n0123456789abcdef", ' '},
      {req, "POST / HTTP/1.1\r\nContent-Lengt@: 2\r\n\r\n0123456789abcdef", 'h'},
      {req, "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: @\r\n\r\nabcd", -1},
      {req, "GET / HTTP/1.1\r\nConnection: clos@\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'e'},
      {req, "GET / HTTP/1.0\r\nConnection: keep-aliv@\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'e'},
      {req, "GET / HTTP/1.1\r\nConnectio@: x\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 'x'},
      {req, "GET / HTTP/1.1\r\nTransfer-Encodin@: chunked\r\n\r\n0\r\n\r\n", 'x'},
      {req, "GET / HTTP/1.1\r\nUpgrad@: websocket\r\n\r\n", 'x'},
      {res, "HTTP/1.1 2@0 OK\r\nContent-Length: 2\r\n\r\nhi", '0'},
      {res, "HTTP/1.1 @00 OK\r\nContent-Length: 2\r\n\r\nhi", '2'},
      {res, "HTTP/1.1 200@OK\r\nContent-Length: 2\r\n\r\nhi", ' '},
      {res, "HTTP/1.1 200 O@K\r\nContent-Length: 2\r\n\r\nhi", 'x'},
      {res, "HTTP/1.1 200 OK@\r\nContent-Length: 2\r\n\r\nhi", 'x'},
      {res, "HTTP/1.@ 200 OK\r\nContent-Length: 2\r\n\r\nhi", '0'},
      {res, "HTTP/1.1 200 OK\r\nX-@: 1\r\nContent-Length: 2\r\n\r\nhi", 'x'},
      {res, "HTTP/1.1 200 OK\r\nX: @\r\nContent-Length: 2\r\n\r\nhi", 'x'},
      {res, "HTTP/1.1 200 OK\r\nContent-Length: @\r\n\r\nhi", '2'},
      {res, "HTTP/1.1 200 OK\r\nContent-Length: 2@\r\n\r\nhi", '0'},
      {res, "HTTP/1.1 20@ OK\r\nContent-Length: 2\r\n\r\nhi", '0', true},
      {res, "HTTP/1.1 30@ Not Modified\r\nContent-Length: 2\r\n\r\nhi", '4'},
      {res, "HTTP/1.1 20@ OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n\r\n", '0'},
  };
  for (const Template& t : templates) {
    size_t at = t.text.find('@');
    ASSERT_NE(at, std::string_view::npos);
    std::string input(t.text);
    SCOPED_TRACE(::testing::PrintToString(input));
    input.erase(at, 1);
    expect_same_as_llhttp(t.type, input, t.no_body);
    input.insert(at, 1, '@');
    for (int b = 0; b < 256; ++b) {
      input[at] = static_cast<char>(b);
      Trace r = expect_same_as_llhttp(t.type, input, t.no_body);
      if (b == static_cast<unsigned char>(t.plain) && t.plain >= 0) {
        ASSERT_FALSE(r.fast.empty());
        EXPECT_TRUE(r.fast[0]) << "the plain byte " << b << " should take the fast path";
      }
    }
  }
}

// Targets, field names, values and reasons are checked 16 bytes at a time: every byte at every
// offset of a run longer than that must still get llhttp's answer.
TEST(ParserFastPath, EveryByteAtEveryOffsetOfALongRun) {
  const std::string run(40, 'a');
  for (size_t offset = 0; offset < run.size(); ++offset) {
    std::string r = run;
    r[offset] = '@';
    const std::string inputs[][2] = {
        {"GET /" + r + " HTTP/1.1\r\nHost: a\r\n\r\n", "q"},
        {"GET / HTTP/1.1\r\nX-Long: " + r + "\r\nHost: a\r\n\r\n", "s"},
        {"GET / HTTP/1.1\r\nX-" + r + ": 1\r\nHost: a\r\n\r\n", "t"},
        {"HTTP/1.1 200 " + r + "\r\nContent-Length: 1\r\n\r\nx", "s"},
    };
    for (const auto& [text, kind] : inputs) {
      std::string input = text;
      size_t at = input.find('@');
      SCOPED_TRACE(::testing::PrintToString(input));
      auto type = text.starts_with("HTTP/") ? Parser::Type::Response : Parser::Type::Request;
      for (int b = 0; b < 256; ++b) {
        input[at] = static_cast<char>(b);
        Trace t = expect_same_as_llhttp(type, input);
        // A space is a value's or a reason's, but not at its end: llhttp decides whether to trim.
        bool inner = offset + 1 < run.size();
        bool plain = b == 'x' || b == '%' || b == '-' || b == '_' || b == '7';
        if (plain || (kind == "s" && b == ' ' && inner)) {
          ASSERT_FALSE(t.fast.empty());
          EXPECT_TRUE(t.fast[0]) << "byte " << b;
        }
      }
    }
  }
}

// Callers decide whether to keep the connection after the message is over and resumed.
TEST(ParserFastPath, KeepAliveStillAnswersAfterTheMessage) {
  const std::string_view inputs[] = {
      "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
      "GET / HTTP/1.0\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",
  };
  for (std::string_view input : inputs) {
    for (auto mode : kModes) {
      SCOPED_TRACE(::testing::PrintToString(input) + mode.name);
      Parser p(Parser::Type::Request, 1024);
      Trace r = drive(p, input, mode.chunk);
      ASSERT_EQ(r.messages.size(), 1u);
      EXPECT_TRUE(r.messages[0].complete);
      EXPECT_EQ(r.messages[0].keep_alive_after, r.messages[0].keep_alive);
      EXPECT_EQ(r.messages[0].keep_alive, input.ends_with("HTTP/1.1\r\n\r\n"));
    }
  }
}

}  // namespace
}  // namespace kedge::http1
