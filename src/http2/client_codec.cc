#include "http2/client_codec.h"

#include <nghttp2/nghttp2.h>

#include <cstring>

namespace kedge::http2 {
namespace {

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

std::vector<nghttp2_nv> make_nva(const std::vector<Header>& headers) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(headers.size());
  for (const Header& h : headers) nva.push_back(make_nv(h.name, h.value));
  return nva;
}

}  // namespace

struct ClientCallbacks {
  static ClientCodec& self(void* user) { return *static_cast<ClientCodec*>(user); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ClientCodec& c = self(user);
    if (frame->hd.stream_id != c.stream_) return 0;
    c.header_bytes_ = 0;
    if (c.response_.head) c.response_.trailers.clear();
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    ClientCodec& c = self(user);
    if (frame->hd.stream_id != c.stream_) return 0;
    c.header_bytes_ += namelen + valuelen + 32;
    if (c.header_bytes_ > c.max_header_list_size_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    ClientCodec::Response& r = c.response_;
    if (r.head) {
      if (!n.starts_with(':')) r.trailers.push_back({std::string(n), std::string(v)});
      return 0;
    }
    if (n == ":status") {
      int status = 0;
      for (char ch : v) status = status * 10 + (ch - '0');
      if (status >= 100 && status < 200) {  // an interim head: the final one replaces it
        r.headers.clear();
        r.status = 0;
        return 0;
      }
      r.status = status;
    } else if (!n.starts_with(':')) {
      r.headers.push_back({std::string(n), std::string(v)});
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ClientCodec& c = self(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      c.goaway_ = true;
      return 0;
    }
    if (frame->hd.stream_id != c.stream_) return 0;
    ClientCodec::Response& r = c.response_;
    if (frame->hd.type == NGHTTP2_HEADERS && r.status != 0) r.head = true;
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA))
      r.end = r.head;
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* user) {
    ClientCodec& c = self(user);
    if (id == c.stream_ && c.response_.head)
      c.response_.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
    ClientCodec& c = self(user);
    if (id != c.stream_) return 0;
    if (!c.response_.end) c.response_.reset = true;
    if (error_code != NGHTTP2_NO_ERROR) c.broken_ = true;
    return 0;
  }

  static ssize_t read_body(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* user) {
    ClientCodec& c = self(user);
    size_t n = std::min(length, c.request_body_.size());
    std::memcpy(buf, c.request_body_.data(), n);
    c.request_body_.erase(0, n);
    if (c.request_body_.empty() && c.body_ended_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!c.request_trailers_.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto nva = make_nva(c.request_trailers_);
        nghttp2_submit_trailer(session, id, nva.data(), nva.size());
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) return NGHTTP2_ERR_DEFERRED;
    return static_cast<ssize_t>(n);
  }
};

ClientCodec::ClientCodec(size_t max_header_list_size)
    : max_header_list_size_(max_header_list_size) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, ClientCallbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, ClientCallbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, ClientCallbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, ClientCallbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, ClientCallbacks::on_stream_close);
  nghttp2_session_client_new(&session_, cb, this);
  nghttp2_session_callbacks_del(cb);
  const nghttp2_settings_entry entries[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(max_header_list_size)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, entries, std::size(entries));
}

ClientCodec::~ClientCodec() { nghttp2_session_del(session_); }

bool ClientCodec::submit_request(const std::vector<Header>& headers, bool has_body) {
  if (!reusable()) return false;
  response_ = Response{};
  request_body_.clear();
  request_trailers_.clear();
  body_ended_ = !has_body;
  auto nva = make_nva(headers);
  nghttp2_data_provider provider{};
  provider.read_callback = ClientCallbacks::read_body;
  stream_ = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                   has_body ? &provider : nullptr, nullptr);
  return stream_ > 0;
}

void ClientCodec::send_body(std::string_view data) {
  request_body_.append(data);
  nghttp2_session_resume_data(session_, stream_);
}

void ClientCodec::end_body(std::vector<Header> trailers) {
  body_ended_ = true;
  request_trailers_ = std::move(trailers);
  nghttp2_session_resume_data(session_, stream_);
}

void ClientCodec::reset_stream(uint32_t error_code) {
  if (stream_ > 0) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_, error_code);
  broken_ = true;  // the server may still send for the stream: do not reuse the connection
}

bool ClientCodec::feed(const uint8_t* data, size_t size) {
  if (nghttp2_session_mem_recv(session_, data, size) < 0) {
    broken_ = true;
    if (!response_.end) response_.reset = true;
    return false;
  }
  return true;
}

bool ClientCodec::drain(std::string& out) {
  while (true) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      broken_ = true;
      return false;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  // A protocol error ends the session once its GOAWAY is on the way: nothing more to read.
  if (!nghttp2_session_want_read(session_)) {
    broken_ = true;
    if (stream_ > 0 && !response_.end) response_.reset = true;
  }
  return true;
}

bool ClientCodec::reusable() const {
  return !goaway_ && !broken_ && (stream_ < 0 || (response_.end && body_ended_)) &&
         nghttp2_session_check_request_allowed(session_) != 0;
}

}  // namespace kedge::http2
