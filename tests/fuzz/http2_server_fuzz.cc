// HTTP/2 client bytes through kedge's nghttp2 server codec, with a handler that answers the way
// Http2Session does: request bodies consumed as forwarded, responses pulled (sometimes deferred
// and resumed), some streams reset by the server. The client preface is prepended.
#include "http2/server_codec.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

using kedge::http2::Header;
using kedge::http2::ServerCodec;

class Handler : public ServerCodec::Handler {
 public:
  explicit Handler(uint8_t mode) : mode_(mode) {}
  ServerCodec* codec = nullptr;

  void on_request(int32_t stream, std::vector<Header> headers, bool end_stream) override {
    FUZZ_CHECK(stream > 0 && stream % 2 == 1);
    FUZZ_CHECK(!streams_.contains(stream));
    bool has_path = false;
    for (const Header& h : headers) has_path = has_path || h.name == ":path";
    streams_[stream] = {};
    if (mode_ & 1 && !has_path) {
      codec->reset(stream, 1);
      return;
    }
    if (end_stream) answer(stream);
  }
  void on_data(int32_t stream, const uint8_t*, size_t size) override {
    FUZZ_CHECK(streams_.contains(stream));
    streams_[stream].received += size;
    codec->consume(stream, size);
  }
  void on_request_end(int32_t stream, std::vector<Header>) override {
    FUZZ_CHECK(streams_.contains(stream));
    answer(stream);
  }
  void on_stream_close(int32_t stream, uint32_t) override {
    FUZZ_CHECK(streams_.erase(stream) == 1);
  }
  std::string_view body(int32_t stream, size_t max, bool& eof) override {
    auto it = streams_.find(stream);
    FUZZ_CHECK(it != streams_.end());
    Stream& s = it->second;
    if (mode_ & 2 && !s.deferred_once) {  // nothing ready yet: resumed after the next input
      s.deferred_once = true;
      deferred_.push_back(stream);
      return {};
    }
    size_t n = std::min(max, s.to_send);
    if (filler_.size() < n) filler_.assign(n, 'x');
    eof = s.to_send == n;
    return {filler_.data(), n};
  }
  void body_sent(int32_t stream, size_t size) override {
    auto it = streams_.find(stream);
    FUZZ_CHECK(it != streams_.end() && size <= it->second.to_send);
    it->second.to_send -= size;
  }
  void resume_deferred() {
    for (int32_t id : deferred_)
      if (streams_.contains(id)) codec->resume(id);
    deferred_.clear();
  }

 private:
  struct Stream {
    size_t received = 0;
    size_t to_send = 0;
    bool deferred_once = false;
  };
  void answer(int32_t stream) {
    Stream& s = streams_[stream];
    s.to_send = (mode_ & 4) ? 70000 : 5;  // past the initial window, or small
    codec->submit_response(stream, 200, {{"content-type", "text/plain"}}, true);
  }
  uint8_t mode_;
  std::map<int32_t, Stream> streams_;
  std::string filler_;  // what response bodies are made of
  std::vector<int32_t> deferred_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint8_t mode = data[0];
  size_t read_size = data[1] % 4 == 0 ? size : 1 + data[1] * 2;
  data += 2;
  size -= 2;
  kedge::http2::ServerSettings settings;
  settings.max_header_list_size = 4096;
  settings.max_concurrent_streams = 16;
  settings.max_resets = 20;
  Handler handler(mode);
  ServerCodec codec(handler, settings);
  handler.codec = &codec;
  static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string out;
  bool alive = codec.feed(reinterpret_cast<const uint8_t*>(kPreface), sizeof kPreface - 1);
  for (size_t offset = 0; alive && offset < size;) {
    size_t n = std::min(read_size, size - offset);
    alive = codec.feed(data + offset, n);
    offset += n;
    handler.resume_deferred();
    out.clear();
    if (!codec.drain(out, 1 << 20)) break;
    if (!codec.want_read() && !codec.want_write()) break;
  }
  out.clear();
  codec.drain(out, 1 << 20);
  return 0;
}
