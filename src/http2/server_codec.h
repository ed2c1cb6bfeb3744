#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

using nghttp2_session = struct nghttp2_session;

namespace kedge::http2 {

struct Header {
  std::string name;  // lower case, pseudo-headers (":path") included
  std::string value;
};

/// A field to send, viewed where it lies; the codec copies it, and lowers the name's case.
struct Field {
  std::string_view name;
  std::string_view value;
};

/// Server-side limits, sent in SETTINGS and enforced on what the client sends.
struct ServerSettings {
  uint32_t max_concurrent_streams = 128;
  uint32_t max_header_list_size = 64 * 1024;  // per header block (and trailers)
  uint32_t max_frame_size = 16384;
  uint32_t stream_window = 256 * 1024;   // request body bytes buffered per stream
  uint32_t connection_window = 1 << 20;  // and per connection
  uint32_t max_resets = 200;             // client RST_STREAMs per reset_window: more → GOAWAY
  std::chrono::milliseconds reset_window{10'000};
};

/// An nghttp2 server session: bytes in (`feed`), events out (Handler), bytes to send (`drain`).
/// Request body windows open only as the handler `consume`s what it forwarded; response
/// bodies are pulled from the handler (`read_body`), and a stream with nothing ready waits for
/// `resume`. Guards against rapid reset and CONTINUATION floods. No sockets, no timers.
/// Thread: owning connection only.
class ServerCodec {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    /// A complete request head; `end_stream`: no body follows.
    virtual void on_request(int32_t stream, std::vector<Header> headers, bool end_stream) = 0;
    /// Request body bytes (copy them); `consume` them once forwarded.
    virtual void on_data(int32_t stream, const uint8_t* data, size_t size) = 0;
    /// The request body ended, with its trailers (possibly none).
    virtual void on_request_end(int32_t stream, std::vector<Header> trailers) = 0;
    /// The stream is gone (answered, reset by either side, or the connection ended).
    virtual void on_stream_close(int32_t stream, uint32_t error_code) = 0;
    /// The response body bytes to send next, at most `max` of them; `eof`: they end the body.
    /// Empty without `eof`: nothing is ready, and the stream waits for `resume`. The codec
    /// copies them straight into its output, then reports them with body_sent().
    virtual std::string_view body(int32_t stream, size_t max, bool& eof) = 0;
    /// The first `size` bytes that body() offered are in the output: drop them.
    virtual void body_sent(int32_t stream, size_t size) = 0;
    /// Trailers to send after the body that body() just ended (none: nullptr).
    virtual const std::vector<Header>* response_trailers(int32_t) { return nullptr; }
  };

  ServerCodec(Handler& handler, const ServerSettings& settings);
  ~ServerCodec();
  ServerCodec(const ServerCodec&) = delete;
  ServerCodec& operator=(const ServerCodec&) = delete;

  /// Client bytes. False: the connection is broken or was refused; send what `drain` gives,
  /// then close.
  bool feed(const uint8_t* data, size_t size);
  /// Appends frames ready to send to `out` until it holds at least `max` bytes or none remain.
  /// False on a fatal error.
  bool drain(std::string& out, size_t max);
  /// Whether the connection has anything left to do (both false: close it).
  bool want_read() const;
  bool want_write() const;

  /// Sends a response head; with `has_body`, the body is pulled through body().
  bool submit_response(int32_t stream, int status, std::span<const Field> fields, bool has_body);
  bool submit_response(int32_t stream, int status, const std::vector<Header>& headers,
                       bool has_body);
  void resume(int32_t stream);
  void consume(int32_t stream, size_t size);
  void reset(int32_t stream, uint32_t error_code);
  /// GOAWAY with `error_code`; streams already begun may finish (graceful when NO_ERROR).
  void goaway(uint32_t error_code);
  bool enhance_your_calm() const { return calm_; }  // a flood or rapid reset was refused
  size_t open_streams() const { return pending_.size(); }

 private:
  struct Pending {
    std::vector<Header> headers;
    size_t bytes = 0;
    bool head_done = false;
  };
  friend struct Callbacks;
  void refuse();

  Handler& handler_;
  ServerSettings settings_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, Pending> pending_;  // open streams, and their header blocks
  std::string* out_ = nullptr;                    // what drain() appends to, while it runs
  size_t out_max_ = 0;                            // and where it stops
  std::deque<std::chrono::steady_clock::time_point> resets_;
  size_t block_bytes_ = 0;  // compressed size of the header block being received
  size_t block_frames_ = 0;
  bool calm_ = false;
};

}  // namespace kedge::http2
