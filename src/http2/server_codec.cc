#include "http2/server_codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>

namespace kedge::http2 {

struct Callbacks {
  static ServerCodec& self(void* user) { return *static_cast<ServerCodec*>(user); }

  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
    ServerCodec& c = self(user);
    if (c.calm_) return 0;  // refused: the rest of this input is ignored
    // nghttp2 1.52 decodes a header block past the header list limit without keeping it; bound
    // the block itself so a CONTINUATION flood cannot keep a connection busy.
    if (hd->type == NGHTTP2_HEADERS) {
      c.block_bytes_ = hd->length;
      c.block_frames_ = 1;
    } else if (hd->type == NGHTTP2_CONTINUATION) {
      c.block_bytes_ += hd->length;
      ++c.block_frames_;
      if (c.block_bytes_ > c.settings_.max_header_list_size + 16384 || c.block_frames_ > 64)
        c.refuse();  // a callback failure here would leave the GOAWAY unsent
    }
    return 0;
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ServerCodec& c = self(user);
    if (c.calm_) return 0;
    auto& p = c.pending_[frame->hd.stream_id];
    p.headers.clear();      // trailers start a new block
    p.headers.reserve(16);  // a browser's request: one allocation instead of five
    p.bytes = 0;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    ServerCodec& c = self(user);
    auto it = c.pending_.find(frame->hd.stream_id);
    if (it == c.pending_.end() || c.calm_) return 0;
    it->second.bytes += namelen + valuelen + 32;  // as SETTINGS_MAX_HEADER_LIST_SIZE counts
    if (it->second.bytes > c.settings_.max_header_list_size)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets this stream
    it->second.headers.push_back({std::string(reinterpret_cast<const char*>(name), namelen),
                                  std::string(reinterpret_cast<const char*>(value), valuelen)});
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ServerCodec& c = self(user);
    if (c.calm_) return 0;
    const int32_t id = frame->hd.stream_id;
    const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        auto it = c.pending_.find(id);
        if (it == c.pending_.end()) break;
        if (!it->second.head_done) {
          it->second.head_done = true;
          c.handler_.on_request(id, std::move(it->second.headers), end_stream);
        } else if (end_stream) {
          c.handler_.on_request_end(id, std::move(it->second.headers));
        }
        it->second.headers.clear();
        break;
      }
      case NGHTTP2_DATA:
        if (end_stream && c.pending_.contains(id)) c.handler_.on_request_end(id, {});
        break;
      case NGHTTP2_RST_STREAM: {
        // Rapid reset (CVE-2023-44487): streams opened and cancelled at once cost the server
        // work the client never waits for. Too many in the window end the connection.
        auto now = std::chrono::steady_clock::now();
        c.resets_.push_back(now);
        while (!c.resets_.empty() && now - c.resets_.front() > c.settings_.reset_window)
          c.resets_.pop_front();
        if (c.resets_.size() > c.settings_.max_resets) c.refuse();
        break;
      }
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* user) {
    ServerCodec& c = self(user);
    if (c.pending_.contains(id) && !c.calm_)
      c.handler_.on_data(id, data, len);
    else
      nghttp2_session_consume(c.session_, id, len);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
    ServerCodec& c = self(user);
    auto it = c.pending_.find(id);
    if (it == c.pending_.end()) return 0;
    bool delivered = it->second.head_done;
    c.pending_.erase(it);
    if (delivered) c.handler_.on_stream_close(id, error_code);
    return 0;
  }

  static ssize_t read_body(nghttp2_session* session, int32_t id, uint8_t*, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* user) {
    bool eof = false;
    ServerCodec::Handler& handler = self(user).handler_;
    size_t n = handler.body(id, length, eof).size();
    if (eof) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      const std::vector<Header>* trailers = handler.response_trailers(id);
      if (trailers && !trailers->empty()) {  // gRPC's grpc-status travels here
        std::vector<nghttp2_nv> nva;
        for (const Header& h : *trailers)
          nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(h.name.data())),
                         reinterpret_cast<uint8_t*>(const_cast<char*>(h.value.data())),
                         h.name.size(), h.value.size(), NGHTTP2_NV_FLAG_NONE});
        if (nghttp2_submit_trailer(session, id, nva.data(), nva.size()) == 0)
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
    }
    if (n == 0 && !eof) return NGHTTP2_ERR_DEFERRED;
    // The bytes go into the output in send_data, without a copy into nghttp2's frame buffer.
    if (n > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    return static_cast<ssize_t>(n);
  }

  /// The DATA frame read_body() sized: its header, then the body bytes from the handler.
  /// Runs inside the same nghttp2_session_mem_send call, so those bytes are still there.
  static int send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd,
                       size_t length, nghttp2_data_source*, void* user) {
    ServerCodec& c = self(user);
    bool eof = false;
    std::string_view body = c.handler_.body(frame->hd.stream_id, length, eof);
    if (!c.out_ || body.size() != length || frame->data.padlen != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    c.out_->append(reinterpret_cast<const char*>(framehd), 9).append(body);
    c.handler_.body_sent(frame->hd.stream_id, length);
    // nghttp2 would go on to the next DATA frame within this call: stop it at drain()'s limit.
    return c.out_->size() >= c.out_max_ ? NGHTTP2_ERR_PAUSE : 0;
  }
};

ServerCodec::ServerCodec(Handler& handler, const ServerSettings& settings)
    : handler_(handler), settings_(settings) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, Callbacks::on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_send_data_callback(cb, Callbacks::send_data);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);  // windows open as bodies are forwarded
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_session_server_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);

  const nghttp2_settings_entry entries[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings_.max_frame_size},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.stream_window},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, entries, std::size(entries));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(settings_.connection_window));
}

ServerCodec::~ServerCodec() { nghttp2_session_del(session_); }

void ServerCodec::refuse() {
  if (calm_) return;
  calm_ = true;
  nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
}

bool ServerCodec::feed(const uint8_t* data, size_t size) {
  if (calm_) return false;
  ssize_t rv = nghttp2_session_mem_recv(session_, data, size);
  if (rv < 0 && !calm_) {
    // A fatal input error leaves the GOAWAY to us. Floods (Debian's nghttp2 1.52 also bounds
    // CONTINUATION frames per block: NGHTTP2_ERR_TOO_MANY_CONTINUATIONS, -905) are met calmly.
    if (rv == NGHTTP2_ERR_FLOODED || rv == -905) {
      refuse();
    } else {
      nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    }
  }
  return rv >= 0 && !calm_;
}

bool ServerCodec::drain(std::string& out, size_t max) {
  out_ = &out;  // DATA frames are appended by send_data, other frames here
  out_max_ = max;
  bool ok = true;
  while (out.size() < max) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) ok = false;
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  out_ = nullptr;
  return ok;
}

bool ServerCodec::want_read() const { return !calm_ && nghttp2_session_want_read(session_); }
bool ServerCodec::want_write() const { return nghttp2_session_want_write(session_); }

bool ServerCodec::submit_response(int32_t stream, int status, std::span<const Field> fields,
                                  bool has_body) {
  if (status < 100 || status > 999) return false;
  const char status_text[3] = {static_cast<char>('0' + status / 100),
                               static_cast<char>('0' + status / 10 % 10),
                               static_cast<char>('0' + status % 10)};
  // nghttp2 copies the fields into one block, lowering the names' case as it goes.
  constexpr size_t kOnStack = 32;
  nghttp2_nv on_stack[kOnStack];
  std::vector<nghttp2_nv> on_heap;
  nghttp2_nv* nva = on_stack;
  if (fields.size() + 1 > kOnStack) {
    on_heap.resize(fields.size() + 1);
    nva = on_heap.data();
  }
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                      NGHTTP2_NV_FLAG_NONE};
  };
  nva[0] = nv(":status", std::string_view(status_text, 3));
  for (size_t i = 0; i < fields.size(); ++i) nva[i + 1] = nv(fields[i].name, fields[i].value);
  nghttp2_data_provider provider{};
  provider.read_callback = Callbacks::read_body;
  return nghttp2_submit_response(session_, stream, nva, fields.size() + 1,
                                 has_body ? &provider : nullptr) == 0;
}

bool ServerCodec::submit_response(int32_t stream, int status, const std::vector<Header>& headers,
                                  bool has_body) {
  std::vector<Field> fields;
  fields.reserve(headers.size());
  for (const Header& h : headers) fields.push_back({h.name, h.value});
  return submit_response(stream, status, fields, has_body);
}

void ServerCodec::resume(int32_t stream) { nghttp2_session_resume_data(session_, stream); }

void ServerCodec::consume(int32_t stream, size_t size) {
  nghttp2_session_consume(session_, stream, size);
}

void ServerCodec::reset(int32_t stream, uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, error_code);
}

void ServerCodec::goaway(uint32_t error_code) {
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), error_code, nullptr, 0);
}

}  // namespace kedge::http2
