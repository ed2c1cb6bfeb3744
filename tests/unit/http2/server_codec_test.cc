#include "http2/server_codec.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace kedge::http2 {
namespace {

/// Records what the codec reports and serves a fixed response body per stream.
struct Recorder : ServerCodec::Handler {
  std::map<int32_t, std::vector<Header>> requests;
  std::map<int32_t, std::string> bodies;
  std::map<int32_t, bool> ended;
  std::map<int32_t, std::vector<Header>> trailers;
  std::vector<int32_t> closed;
  std::map<int32_t, std::string> out;  // response bodies still to send
  bool out_done = false;

  void on_request(int32_t id, std::vector<Header> h, bool end_stream) override {
    requests[id] = std::move(h);
    ended[id] = end_stream;
  }
  void on_data(int32_t id, const uint8_t* d, size_t n) override {
    bodies[id].append(reinterpret_cast<const char*>(d), n);
  }
  void on_request_end(int32_t id, std::vector<Header> t) override {
    ended[id] = true;
    trailers[id] = std::move(t);
  }
  void on_stream_close(int32_t id, uint32_t) override { closed.push_back(id); }
  std::string_view body(int32_t id, size_t max, bool& eof) override {
    const std::string& o = out[id];
    size_t n = std::min(max, o.size());
    eof = out_done && n == o.size();
    return {o.data(), n};
  }
  void body_sent(int32_t id, size_t n) override { out[id].erase(0, n); }
};

/// A client-side nghttp2 session that writes into a string and records what it receives.
struct Client {
  nghttp2_session* session = nullptr;
  std::map<int32_t, std::string> bodies;  // per stream
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // of response heads, :status too
  bool stream_closed = false;
  uint32_t goaway_error = 0xffffffff;

  Client() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame*, const uint8_t* n, size_t nl,
               const uint8_t* v, size_t vl, uint8_t, void* u) {
          auto& c = *static_cast<Client*>(u);
          c.fields.emplace_back(std::string(reinterpret_cast<const char*>(n), nl),
                                std::string(reinterpret_cast<const char*>(v), vl));
          if (c.fields.back().first == ":status") c.status = std::stoi(c.fields.back().second);
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t n, void* u) {
          static_cast<Client*>(u)->bodies[id].append(reinterpret_cast<const char*>(d), n);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t, uint32_t, void* u) {
          static_cast<Client*>(u)->stream_closed = true;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          if (f->hd.type == NGHTTP2_GOAWAY)
            static_cast<Client*>(u)->goaway_error = f->goaway.error_code;
          return 0;
        });
    nghttp2_session_client_new(&session, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session); }

  std::string take() {
    std::string out;
    const uint8_t* data = nullptr;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session, &data)) > 0)
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    return out;
  }
  int32_t request(const char* method, const char* path, nghttp2_data_provider* body = nullptr) {
    auto nv = [](const char* n, const char* v) {
      return nghttp2_nv{(uint8_t*)n, (uint8_t*)v, strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE};
    };
    nghttp2_nv h[] = {nv(":method", method), nv(":scheme", "https"), nv(":path", path),
                      nv(":authority", "a.test"), nv("x-test", "1")};
    return nghttp2_submit_request(session, nullptr, h, 5, body, nullptr);
  }
};

/// Moves bytes both ways until neither side has anything to send.
void pump(Client& c, ServerCodec& s, bool* feed_ok = nullptr) {
  for (int i = 0; i < 100; ++i) {
    std::string up = c.take();
    std::string down;
    bool ok = up.empty() || s.feed(reinterpret_cast<const uint8_t*>(up.data()), up.size());
    if (feed_ok) *feed_ok = *feed_ok && ok;
    s.drain(down, 1 << 20);
    if (!down.empty())
      nghttp2_session_mem_recv(c.session, reinterpret_cast<const uint8_t*>(down.data()),
                               down.size());
    if (up.empty() && down.empty()) return;
  }
}

using Pair = std::pair<std::string, std::string>;

TEST(ServerCodec, ResponseFieldsGoAsViewedWithTheirNamesLowered) {
  Recorder r;
  ServerCodec codec(r, ServerSettings{});
  Client c;
  int32_t a = c.request("GET", "/a");
  int32_t b = c.request("GET", "/b");
  pump(c, codec);
  EXPECT_FALSE(codec.submit_response(a, 1000, std::span<const Field>{}, false));
  // Views into an HTTP/1.1 head, as an upstream sent it; more fields than fit on the stack.
  const std::string head = "Content-Type: text/plain\r\nX-Mixed-Case: Value Kept\r\n";
  std::vector<Field> fields = {{std::string_view(head).substr(0, 12), "text/plain"},
                               {std::string_view(head).substr(26, 12), "Value Kept"}};
  ASSERT_TRUE(codec.submit_response(a, 404, fields, false));
  pump(c, codec);
  ASSERT_EQ(c.fields.size(), 3u);
  EXPECT_EQ(c.fields[0], Pair(":status", "404"));
  EXPECT_EQ(c.fields[1], Pair("content-type", "text/plain"));
  EXPECT_EQ(c.fields[2], Pair("x-mixed-case", "Value Kept"));
  EXPECT_EQ(head.substr(0, 12), "Content-Type") << "the codec must copy, not lower in place";

  c.fields.clear();
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("X-Field-" + std::to_string(i));
  fields.clear();
  for (auto& n : names) fields.push_back({n, n});
  ASSERT_TRUE(codec.submit_response(b, 200, fields, false));
  pump(c, codec);
  ASSERT_EQ(c.fields.size(), 41u);
  EXPECT_EQ(c.fields[40], Pair("x-field-39", "X-Field-39"));
}

TEST(ServerCodec, RequestWithoutBodyAndDeferredResponse) {
  Recorder r;
  ServerCodec codec(r, ServerSettings{});
  Client c;
  int32_t id = c.request("GET", "/x");
  pump(c, codec);
  ASSERT_EQ(r.requests.count(id), 1u);
  EXPECT_TRUE(r.ended[id]);
  auto& h = r.requests[id];
  EXPECT_EQ(h[0].name, ":method");
  EXPECT_EQ(h[0].value, "GET");
  EXPECT_EQ(h.back().name, "x-test");

  ASSERT_TRUE(codec.submit_response(id, 200, {{"content-type", "text/plain"}}, true));
  pump(c, codec);  // nothing ready: the stream is deferred
  EXPECT_EQ(c.status, 200);
  EXPECT_FALSE(c.stream_closed);
  r.out[id] = "hello";
  r.out_done = true;
  codec.resume(id);
  pump(c, codec);
  EXPECT_EQ(c.bodies[id], "hello");
  EXPECT_TRUE(c.stream_closed);
  EXPECT_EQ(r.closed, std::vector<int32_t>{id});
}

/// Two requests, answered with the bodies given (200, no fields).
struct TwoAnswers {
  Recorder r;
  ServerCodec codec{r, ServerSettings{}};
  Client c;
  int32_t a = c.request("GET", "/a");
  int32_t b = c.request("GET", "/b");

  void answer(const std::string& body_a, const std::string& body_b) {
    pump(c, codec);
    r.out[a] = body_a;
    r.out[b] = body_b;
    r.out_done = true;
    ASSERT_TRUE(codec.submit_response(a, 200, std::span<const Field>{}, true));
    ASSERT_TRUE(codec.submit_response(b, 200, std::span<const Field>{}, true));
  }
};

TEST(ServerCodec, BodiesOfManyFramesArriveWholeAndUnmixed) {
  // Response bodies go from the handler into the output without nghttp2's frame buffer: each
  // DATA frame must carry the handler's next bytes, for the stream the frame belongs to.
  TwoAnswers t;
  std::string body_a, body_b;
  for (int i = 0; i < 50'000; ++i) {  // past a frame (16 KiB) and the client's window (64 KiB)
    body_a.push_back(static_cast<char>('a' + i % 23));
    body_b.push_back(static_cast<char>('0' + i % 7));
  }
  t.answer(body_a, body_b);
  pump(t.c, t.codec);
  EXPECT_EQ(t.c.bodies[t.a], body_a);
  EXPECT_EQ(t.c.bodies[t.b], body_b);
  EXPECT_TRUE(t.r.out[t.a].empty());
  EXPECT_TRUE(t.r.out[t.b].empty());
  EXPECT_EQ(t.r.closed.size(), 2u);
}

TEST(ServerCodec, DrainStopsAtItsLimitAndGoesOnNextTime) {
  TwoAnswers t;
  t.answer(std::string(50'000, 'a'), std::string(50'000, 'b'));
  // The client's window lets 64 KiB of DATA go; a drain of 20,000 bytes may pass its limit by
  // at most the frame that crossed it.
  std::string first;
  ASSERT_TRUE(t.codec.drain(first, 20'000));
  EXPECT_GE(first.size(), 20'000u);
  EXPECT_LE(first.size(), 20'000u + 16'384 + 9);
  std::string rest;
  ASSERT_TRUE(t.codec.drain(rest, 1 << 20));
  EXPECT_GT(rest.size(), 30'000u) << "the next drain did not go on where the first stopped";
  std::string down = first + rest;
  nghttp2_session_mem_recv(t.c.session, reinterpret_cast<const uint8_t*>(down.data()), down.size());
  EXPECT_EQ(t.c.bodies[t.a].size() + t.c.bodies[t.b].size(), 65'535u);  // the initial window
  pump(t.c, t.codec);  // window updates: the rest goes
  EXPECT_EQ(t.c.bodies[t.a], std::string(50'000, 'a'));
  EXPECT_EQ(t.c.bodies[t.b], std::string(50'000, 'b'));
}

TEST(ServerCodec, RequestBodyWindowOpensOnlyWhenConsumed) {
  Recorder r;
  ServerSettings settings;
  settings.stream_window = 65535;
  ServerCodec codec(r, settings);
  Client c;
  static std::string payload(200 * 1024, 'b');
  static size_t sent = 0;
  sent = 0;
  nghttp2_data_provider body{};
  body.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                          nghttp2_data_source*, void*) -> ssize_t {
    size_t n = std::min(len, payload.size() - sent);
    std::memcpy(buf, payload.data() + sent, n);
    sent += n;
    if (sent == payload.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  };
  int32_t id = c.request("POST", "/up", &body);
  pump(c, codec);
  // Without consume, the client stops at the initial stream window.
  EXPECT_EQ(r.bodies[id].size(), 65535u);
  EXPECT_FALSE(r.ended[id]);
  size_t consumed = 0;
  for (int i = 0; i < 50 && !r.ended[id]; ++i) {
    codec.consume(id, r.bodies[id].size() - consumed);
    consumed = r.bodies[id].size();
    pump(c, codec);
  }
  EXPECT_TRUE(r.ended[id]);
  EXPECT_EQ(r.bodies[id], payload);
}

TEST(ServerCodec, TrailersEndTheRequest) {
  Recorder r;
  ServerCodec codec(r, ServerSettings{});
  Client c;
  static bool done = false;
  done = false;
  nghttp2_data_provider body{};
  body.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t, uint32_t* flags,
                          nghttp2_data_source*, void*) -> ssize_t {
    if (done) return NGHTTP2_ERR_DEFERRED;
    done = true;
    buf[0] = 'x';
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return 1;
  };
  int32_t id = c.request("POST", "/t", &body);
  pump(c, codec);
  nghttp2_nv t{(uint8_t*)"x-checksum", (uint8_t*)"42", 10, 2, NGHTTP2_NV_FLAG_NONE};
  ASSERT_EQ(nghttp2_submit_trailer(c.session, id, &t, 1), 0);
  pump(c, codec);
  EXPECT_TRUE(r.ended[id]);
  ASSERT_EQ(r.trailers[id].size(), 1u);
  EXPECT_EQ(r.trailers[id][0].name, "x-checksum");
  EXPECT_EQ(r.bodies[id], "x");
}

TEST(ServerCodec, RapidResetEndsTheConnection) {
  Recorder r;
  ServerSettings settings;
  settings.max_resets = 20;
  ServerCodec codec(r, settings);
  // HEADERS + RST_STREAM pairs in one write.
  Client d;
  std::string bytes;
  for (int i = 0; i < 30; ++i) {
    int32_t id = d.request("GET", "/");
    bytes += d.take();
    nghttp2_submit_rst_stream(d.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    bytes += d.take();
  }
  bool ok = codec.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_FALSE(ok);
  EXPECT_TRUE(codec.enhance_your_calm());
  std::string down;
  codec.drain(down, 1 << 20);
  nghttp2_session_mem_recv(d.session, reinterpret_cast<const uint8_t*>(down.data()), down.size());
  EXPECT_EQ(d.goaway_error, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_FALSE(codec.want_read());
}

TEST(ServerCodec, OversizedHeaderListResetsTheStream) {
  Recorder r;
  ServerSettings settings;
  settings.max_header_list_size = 4096;
  ServerCodec codec(r, settings);
  Client c;
  std::string big(8000, 'v');
  nghttp2_nv h[] = {{(uint8_t*)":method", (uint8_t*)"GET", 7, 3, 0},
                    {(uint8_t*)":scheme", (uint8_t*)"https", 7, 5, 0},
                    {(uint8_t*)":path", (uint8_t*)"/", 5, 1, 0},
                    {(uint8_t*)":authority", (uint8_t*)"a.test", 10, 6, 0},
                    {(uint8_t*)"x-big", (uint8_t*)big.data(), 5, big.size(), 0}};
  int32_t id = nghttp2_submit_request(c.session, nullptr, h, 5, nullptr, nullptr);
  pump(c, codec);
  EXPECT_EQ(r.requests.count(id), 0u);
  EXPECT_TRUE(c.stream_closed);
  EXPECT_EQ(c.status, 0);
}

}  // namespace
}  // namespace kedge::http2

namespace kedge::http2 {
namespace {

std::string raw_frame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload) {
  std::string f;
  f.push_back(static_cast<char>(payload.size() >> 16));
  f.push_back(static_cast<char>(payload.size() >> 8));
  f.push_back(static_cast<char>(payload.size()));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int shift : {24, 16, 8, 0}) f.push_back(static_cast<char>(stream >> shift));
  return f + payload;
}

TEST(ServerCodec, ContinuationFloodEndsTheConnection) {
  Recorder r;
  ServerCodec codec(r, ServerSettings{});
  Client c;
  std::string bytes = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(4, 0, 0, "");
  bytes += raw_frame(1, 0, 1,
                     std::string("\x82\x86\x84\x01\x06"
                                 "a.test",
                                 10));
  std::string field(
      "\x40\x01"
      "a"
      "\x01"
      "b",
      5);
  for (int i = 0; i < 200; ++i) bytes += raw_frame(9, 0, 1, field + field + field);
  EXPECT_FALSE(codec.feed(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(codec.enhance_your_calm());
  std::string down;
  EXPECT_TRUE(codec.drain(down, 1 << 20));
  nghttp2_session_mem_recv(c.session, reinterpret_cast<const uint8_t*>(down.data()), down.size());
  EXPECT_EQ(c.goaway_error, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_TRUE(r.requests.empty());
}

}  // namespace
}  // namespace kedge::http2
