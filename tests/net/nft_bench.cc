// Update cost of the nftables data plane at scale: loads S Services with E endpoints each into
// kedge's table (one transaction, as at start), then changes one endpoint of one Service C times
// (one transaction each, as on an EndpointSlice change), timing both. Needs root; run it in a
// network namespace of its own (tests/net/measure_nft.sh does). Not part of the test run.
//
//   nft_bench [--services 10000] [--endpoints 10] [--changes 50] [--runner library|command]
//             [--probe-node-port PORT --probe-endpoint IP:PORT]
//
// The probe Service (optional) is one more Service with a UDP NodePort that a forwarding probe
// can use while the table is loaded and changed. Prints one JSON object.
#include "l4/nft_ruleset.h"
#include "l4/nft_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

using namespace kedge;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

model::SocketAddress ip4(uint32_t v, uint16_t port) {
  model::SocketAddress a;
  a.ip[0] = static_cast<uint8_t>(v >> 24);
  a.ip[1] = static_cast<uint8_t>(v >> 16);
  a.ip[2] = static_cast<uint8_t>(v >> 8);
  a.ip[3] = static_cast<uint8_t>(v);
  a.port = port;
  return a;
}

std::shared_ptr<model::Snapshot> snapshot(int services, int endpoints, int changed_generation,
                                          int probe_port, const std::string& probe_endpoint) {
  auto snap = std::make_shared<model::Snapshot>();
  const uint32_t vip_base = (10u << 24) | (200u << 16);  // 10.200.0.0/16: ClusterIPs
  const uint32_t pod_base = (10u << 24) | (1u << 16);    // 10.1.0.0/16 and up: endpoints
  for (int s = 0; s < services; ++s) {
    auto c = std::make_shared<model::Cluster>();
    c->name = fmt::format("bench/svc-{}:80/TCP", s);
    for (int e = 0; e < endpoints; ++e) {
      uint32_t pod = pod_base + static_cast<uint32_t>(s * endpoints + e);
      // Service 0's first endpoint moves on every change.
      if (s == 0 && e == 0)
        pod = (10u << 24) | (250u << 16) | static_cast<uint32_t>(changed_generation);
      c->endpoints.push_back({ip4(pod, 8080), "", ""});
    }
    snap->l4_listeners.push_back({ip4(vip_base + static_cast<uint32_t>(s), 80),
                                  model::L4Protocol::Tcp, model::L4Role::ClusterIP, c->name, c, 0});
  }
  if (probe_port > 0) {
    auto colon = probe_endpoint.rfind(':');
    auto c = std::make_shared<model::Cluster>();
    c->name = "bench/probe:80/UDP";
    c->endpoints.push_back({*model::SocketAddress::parse(
                                probe_endpoint.substr(0, colon),
                                static_cast<uint16_t>(std::stoi(probe_endpoint.substr(colon + 1)))),
                            "", ""});
    snap->l4_listeners.push_back({ip4((10u << 24) | 1, static_cast<uint16_t>(probe_port)),
                                  model::L4Protocol::Udp, model::L4Role::NodePort, c->name, c, 0});
  }
  return snap;
}

}  // namespace

int main(int argc, char** argv) {
  int services = 10000, endpoints = 10, changes = 50, probe_port = 0;
  std::string runner = "library", probe_endpoint;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--services")
      services = std::atoi(v.c_str());
    else if (k == "--endpoints")
      endpoints = std::atoi(v.c_str());
    else if (k == "--changes")
      changes = std::atoi(v.c_str());
    else if (k == "--runner")
      runner = v;
    else if (k == "--probe-node-port")
      probe_port = std::atoi(v.c_str());
    else if (k == "--probe-endpoint")
      probe_endpoint = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  auto run = l4::make_nft_runner(runner == "command" ? l4::NftRunnerKind::Command
                                                     : l4::NftRunnerKind::Library);
  l4::NftRuleset rules;
  // Snapshots are made outside the timed parts: the translator makes them, not the data plane.
  auto first = snapshot(services, endpoints, 0, probe_port, probe_endpoint);
  auto t0 = Clock::now();
  rules.change(*first);
  double build_ms = ms_since(t0);
  std::string full = rules.full();
  t0 = Clock::now();
  if (auto r = run->run(full); !r) {
    std::cerr << r.error().message << "\n";
    return 1;
  }
  double load_ms = ms_since(t0);
  std::vector<double> update_ms, build_update_ms;
  size_t update_bytes = 0;
  for (int g = 1; g <= changes; ++g) {
    auto next = snapshot(services, endpoints, g, probe_port, probe_endpoint);
    auto tb = Clock::now();
    std::string script = rules.change(*next).script;
    build_update_ms.push_back(ms_since(tb));
    update_bytes = script.size();
    auto tu = Clock::now();
    if (auto r = run->run(script); !r) {
      std::cerr << r.error().message << "\n";
      return 1;
    }
    update_ms.push_back(ms_since(tu));
  }
  l4::NftState state = rules.state();
  std::sort(update_ms.begin(), update_ms.end());
  std::sort(build_update_ms.begin(), build_update_ms.end());
  auto pct = [](const std::vector<double>& v, double p) {
    return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
  };
  std::cout << fmt::format(
      "{{\"runner\":\"{}\",\"services\":{},\"endpoints_per_service\":{},\"elements\":{},"
      "\"script_bytes\":{},\"snapshot_to_state_ms\":{:.1f},\"full_load_ms\":{:.1f},"
      "\"changes\":{},\"change_bytes\":{},\"change_apply_ms\":{{\"min\":{:.2f},\"median\":{:.2f},"
      "\"p90\":{:.2f},\"max\":{:.2f}}},\"change_compute_ms_median\":{:.2f}}}\n",
      runner, services, endpoints,
      state.service_ips.size() + state.endpoints.size() + state.backends.size() +
          state.hairpin.size(),
      full.size(), build_ms, load_ms, changes, update_bytes, pct(update_ms, 0), pct(update_ms, 0.5),
      pct(update_ms, 0.9), update_ms.empty() ? 0.0 : update_ms.back(), pct(build_update_ms, 0.5));
  return 0;
}
