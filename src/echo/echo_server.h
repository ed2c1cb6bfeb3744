#pragma once

#include <cstdint>
#include <string>

namespace kedge::echo {

struct EchoOptions {
  std::string listen = "127.0.0.1:8080";
  std::string name = "echo";  // the Service it stands for
  std::string pod;
  std::string namespace_ = "default";
  bool udp = false;  // also echo UDP datagrams on the same address and port
};

/// `kedge echo`: a small HTTP/1.1 backend for the demo and the tests. Answers every request
/// with JSON describing it (method, path, host, proto, headers, service, pod, namespace, and
/// the body's size and SHA-256), echoes WebSocket frames, and obeys `?status=N`,
/// `?delay_ms=N` and `?bytes=N` (a streamed body of N bytes). With `udp`, each UDP datagram
/// is answered with `{"service", "pod", "data"}`. Runs until SIGINT/SIGTERM.
int run_echo(const EchoOptions& options);

}  // namespace kedge::echo
