#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kedge::proxy {

using Millis = std::chrono::milliseconds;

/// Every limit of the HTTP proxy, with its default. Each has a flag (see server/options.cc).
struct Limits {
  size_t max_head_bytes = 32 * 1024;        // --max-header-bytes: past it 431
  int64_t max_body_bytes = 1024 * 1024;     // --max-body-bytes: past it 413; 0 = unlimited
  Millis client_header_timeout{60'000};     // --client-header-timeout
  Millis client_body_timeout{60'000};       // --client-body-timeout
  Millis keepalive_timeout{75'000};         // --keepalive-timeout: idle downstream connection
  Millis upstream_connect_timeout{5'000};   // --upstream-connect-timeout
  Millis upstream_read_timeout{60'000};     // --upstream-read-timeout (also idle tunnels)
  Millis upstream_send_timeout{60'000};     // --upstream-send-timeout
  Millis upstream_idle_timeout{60'000};     // --upstream-keepalive-timeout
  size_t upstream_idle_per_endpoint = 320;  // --upstream-keepalive-connections, as ingress-nginx
  int64_t max_connections = 16384;          // --max-connections, per worker
  bool io_uring = true;                     // --io-uring: batch a round's socket calls
  int max_attempts = 3;                     // tries on other endpoints for safe failures
  int eject_after_failures = 3;             // failures in a row that eject an endpoint
  Millis eject_base{1'000};                 // first ejection time; doubles up to eject_max
  Millis eject_max{30'000};
  uint32_t http2_max_concurrent_streams = 128;      // --http2-max-concurrent-streams
  uint32_t http2_max_header_list_size = 64 * 1024;  // --http2-max-header-list-size
  uint32_t http2_max_frame_size = 16384;            // --http2-max-frame-size
  uint32_t http2_max_resets = 200;     // --http2-max-resets: client-cancelled streams per 10 s
  int limit_req_status = 503;          // --limit-req-status-code (ingress-nginx's default)
  int limit_conn_status = 503;         // --limit-conn-status-code
  size_t limit_table_slots = 1 << 16;  // --limit-table-slots: clients tracked by limit-* at once
};

/// How requests reached kedge; sets X-Forwarded-Proto and -Port.
struct ListenerInfo {
  std::string scheme = "http";  // "https": TLS is terminated on this listener
  uint16_t port = 80;
  std::string api_proxy_token;  // not empty: this listener is the API proxy
  uint16_t https_port = 0;      // where ssl-redirect sends plain HTTP; 0: no HTTPS listener
  std::string hsts;             // Strict-Transport-Security value on HTTPS answers; empty: none
};

}  // namespace kedge::proxy
