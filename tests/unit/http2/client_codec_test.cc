#include "http2/client_codec.h"
#include "http2/server_codec.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <map>
#include <string>
#include <vector>

namespace kedge::http2 {
namespace {

/// A server that answers every request with a fixed head, body and trailers.
struct Backend : ServerCodec::Handler {
  std::vector<Header> request;
  std::string request_body;
  std::vector<Header> request_trailers;
  bool request_ended = false;
  std::string body_out;  // response body still to send
  std::vector<Header> trailers;
  std::vector<Header> extra;  // more response head fields
  ServerCodec* codec = nullptr;

  void on_request(int32_t id, std::vector<Header> h, bool end_stream) override {
    request = std::move(h);
    request_ended = end_stream;
    if (end_stream) respond(id);
  }
  void on_data(int32_t id, const uint8_t* d, size_t n) override {
    request_body.append(reinterpret_cast<const char*>(d), n);
    codec->consume(id, n);
  }
  void on_request_end(int32_t id, std::vector<Header> t) override {
    request_ended = true;
    request_trailers = std::move(t);
    respond(id);
  }
  void respond(int32_t id) {
    std::vector<Header> head = {{"content-type", "application/grpc"}};
    head.insert(head.end(), extra.begin(), extra.end());
    codec->submit_response(id, 200, head, true);
  }
  void on_stream_close(int32_t, uint32_t) override {}
  std::string_view body(int32_t, size_t max, bool& eof) override {
    size_t n = std::min(max, body_out.size());
    eof = n == body_out.size();
    return {body_out.data(), n};
  }
  void body_sent(int32_t, size_t n) override { body_out.erase(0, n); }
  const std::vector<Header>* response_trailers(int32_t) override { return &trailers; }
};

/// Moves bytes between the two codecs until neither has anything to send.
void pump(ClientCodec& client, ServerCodec& server) {
  for (int round = 0; round < 100; ++round) {
    std::string to_server, to_client;
    ASSERT_TRUE(client.drain(to_server));
    ASSERT_TRUE(server.drain(to_client, 1 << 20));
    if (to_server.empty() && to_client.empty()) return;
    ASSERT_TRUE(server.feed(reinterpret_cast<const uint8_t*>(to_server.data()), to_server.size()));
    ASSERT_TRUE(client.feed(reinterpret_cast<const uint8_t*>(to_client.data()), to_client.size()));
  }
  FAIL() << "the codecs kept talking";
}

std::vector<Header> request_head() {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":authority", "grpc.example.test"},
          {":path", "/pkg.Svc/Call"},
          {"te", "trailers"}};
}

TEST(ClientCodec, BodyAndTrailersBothWays) {
  Backend backend;
  ServerCodec server(backend, ServerSettings{});
  backend.codec = &server;
  backend.body_out = std::string(100'000, 'r');  // more than one window's worth of frames
  backend.trailers = {{"grpc-status", "0"}, {"grpc-message", "ok"}};
  ClientCodec client(64 * 1024);

  ASSERT_TRUE(client.submit_request(request_head(), true));
  client.send_body("hello ");
  client.send_body("world");
  client.end_body({{"client-trailer", "yes"}});
  pump(client, server);

  EXPECT_EQ(backend.request_body, "hello world");
  ASSERT_EQ(backend.request_trailers.size(), 1u);
  EXPECT_EQ(backend.request_trailers[0].name, "client-trailer");
  auto& r = client.response();
  EXPECT_TRUE(r.head);
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].value, "application/grpc");
  EXPECT_EQ(r.body.size(), 100'000u);
  EXPECT_TRUE(r.end);
  EXPECT_FALSE(r.reset);
  ASSERT_EQ(r.trailers.size(), 2u);
  EXPECT_EQ(r.trailers[0].name, "grpc-status");
  EXPECT_EQ(r.trailers[1].value, "ok");
  EXPECT_TRUE(client.reusable());

  // The connection carries the next request.
  backend.body_out = "second";
  backend.trailers.clear();
  ASSERT_TRUE(client.submit_request(request_head(), false));
  pump(client, server);
  EXPECT_TRUE(backend.request_ended);
  EXPECT_EQ(client.response().body, "second");
  EXPECT_TRUE(client.response().end);
  EXPECT_TRUE(client.response().trailers.empty());
}

TEST(ClientCodec, ResetStreamIsACutResponseAndNoReuse) {
  Backend backend;
  ServerCodec server(backend, ServerSettings{});
  backend.codec = &server;
  ClientCodec client(64 * 1024);
  ASSERT_TRUE(client.submit_request(request_head(), true));
  client.send_body("partial");
  pump(client, server);
  server.reset(1, NGHTTP2_INTERNAL_ERROR);
  pump(client, server);
  EXPECT_TRUE(client.response().reset);
  EXPECT_FALSE(client.response().end);
  EXPECT_FALSE(client.reusable());
}

TEST(ClientCodec, GarbageFromTheServerBreaksTheConnection) {
  ClientCodec client(64 * 1024);
  ASSERT_TRUE(client.submit_request(request_head(), false));
  std::string out;
  ASSERT_TRUE(client.drain(out));
  const std::string garbage = "HTTP/1.1 200 OK\r\n\r\n";  // an HTTP/1.1 server, say
  client.feed(reinterpret_cast<const uint8_t*>(garbage.data()), garbage.size());
  std::string goaway;
  ASSERT_TRUE(client.drain(goaway));
  EXPECT_FALSE(goaway.empty());
  EXPECT_TRUE(client.response().reset);
  EXPECT_FALSE(client.reusable());
}

TEST(ClientCodec, OversizedResponseHeadersResetTheStream) {
  Backend backend;
  ServerCodec server(backend, ServerSettings{});
  backend.codec = &server;
  backend.extra = {{"x-big", std::string(2000, 'b')}};
  ClientCodec client(1024);
  ASSERT_TRUE(client.submit_request(request_head(), false));
  pump(client, server);
  EXPECT_FALSE(client.response().head);
  EXPECT_TRUE(client.response().reset);
  EXPECT_FALSE(client.reusable());
}

}  // namespace
}  // namespace kedge::http2
