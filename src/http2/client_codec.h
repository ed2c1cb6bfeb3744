#pragma once

#include "http2/server_codec.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kedge::http2 {

/// An nghttp2 client session for one upstream connection (gRPC and other HTTP/2 backends). It
/// carries one request at a time, as nginx's grpc_pass does, and keeps the connection for the
/// next one when the last ended cleanly. Bytes in (`feed`), bytes to send (`drain`); the response
/// accumulates in `response()` for the caller to take. No sockets, no timers.
/// Thread: owning connection only.
class ClientCodec {
 public:
  struct Response {
    int status = 0;
    std::vector<Header> headers;  // of the final head, without pseudo-headers
    bool head = false;            // the final head has arrived
    std::string body;             // DATA received and not yet taken by the caller
    std::vector<Header> trailers;
    bool end = false;    // END_STREAM: the response is complete
    bool reset = false;  // the stream or the connection failed: the response is cut
  };

  explicit ClientCodec(size_t max_header_list_size);
  ~ClientCodec();
  ClientCodec(const ClientCodec&) = delete;
  ClientCodec& operator=(const ClientCodec&) = delete;

  /// Starts a request (`headers` with the pseudo-headers first). With `has_body`, the body
  /// follows through send_body() and end_body(). False when the session cannot take one.
  bool submit_request(const std::vector<Header>& headers, bool has_body);
  void send_body(std::string_view data);
  /// Ends the request body, with trailers (possibly none).
  void end_body(std::vector<Header> trailers);
  /// Request body bytes handed over but not yet framed (the peer's window may be closed).
  size_t pending_body() const { return request_body_.size(); }
  void reset_stream(uint32_t error_code);

  /// Server bytes. False: the connection is broken (the response is marked reset). A protocol
  /// error that nghttp2 answers with GOAWAY shows once that GOAWAY has been drained.
  bool feed(const uint8_t* data, size_t size);
  /// Appends frames ready to send to `out`. False on a fatal error.
  bool drain(std::string& out);
  Response& response() { return response_; }
  /// Whether the connection can carry another request after this one.
  bool reusable() const;

 private:
  friend struct ClientCallbacks;
  nghttp2_session* session_ = nullptr;
  size_t max_header_list_size_;
  size_t header_bytes_ = 0;
  int32_t stream_ = -1;
  Response response_;
  std::string request_body_;  // handed over, not yet framed
  bool body_ended_ = false;
  std::vector<Header> request_trailers_;
  bool goaway_ = false;
  bool broken_ = false;
};

}  // namespace kedge::http2
