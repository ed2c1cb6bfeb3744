// The nftables data plane: keeps kedge's table equal to the snapshot with one transaction per
// change, flushes the conntrack entries of UDP flows whose endpoint left, and serves the health
// check NodePorts of externalTrafficPolicy Local from userspace as kube-proxy does.
#include "l4/nftables_data_plane.h"

#include "l4/command.h"
#include "l4/nft_ruleset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>

namespace kedge::l4 {
namespace {

using Clock = std::chrono::steady_clock;

class NftablesDataPlane final : public DataPlane {
 public:
  explicit NftablesDataPlane(const NftablesOptions& options)
      : runner_(make_nft_runner(options.runner)),
        health_(make_userspace_data_plane(options.userspace)) {}
  ~NftablesDataPlane() override { stop(); }

  Status start() {
    auto r = runner_->run(ruleset_.full());
    if (!r) return fail("cannot load nftables table ip kedge: " + r.error().message);
    spdlog::info("nftables: table {} {} loaded ({})", kNftFamily, kNftTable,
                 nft_library_available() ? "libnftables" : "nft -f -");
    started_ = true;
    return {};
  }

  void apply(model::SnapshotConstPtr snapshot) override {
    std::lock_guard lock(mutex_);
    if (!started_) return;
    auto t0 = Clock::now();
    NftChange change = ruleset_.change(*snapshot);
    if (change.skipped_ipv6 && !warned_ipv6_) {
      spdlog::warn("nftables: {} IPv6 Service addresses are not forwarded (table ip kedge)",
                   change.skipped_ipv6);
      warned_ipv6_ = true;
    }
    if (reload_ || !change.script.empty()) {
      auto r = runner_->run(reload_ ? ruleset_.full() : change.script);
      if (!r && !reload_) {
        // The kernel's table is not what kedge thinks (changed by hand?): load it whole.
        spdlog::warn("nftables: update refused ({}); reloading the table", r.error().message);
        r = runner_->run(ruleset_.full());
      }
      if (!r) {
        // The kernel keeps its last table; the next snapshot loads it whole.
        spdlog::error("nftables: cannot load the table: {}", r.error().message);
        reload_ = true;
        return;
      }
    }
    reload_ = false;
    flush_udp(change);
    auto ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    spdlog::info(
        "nftables: generation {}: {} Service addresses, {} NodePorts, {} endpoints; "
        "{} bytes of changes applied in {:.1f} ms",
        snapshot->generation, change.service_ips, change.service_nodeports, change.endpoints,
        change.script.size(), ms);
    auto health = std::make_shared<model::Snapshot>();
    health->generation = snapshot->generation;
    health->health_checks = snapshot->health_checks;
    health_->apply(std::move(health));
  }

  void stop() override {
    std::lock_guard lock(mutex_);
    if (!started_) return;
    started_ = false;
    health_->stop();
    if (auto r = runner_->run(NftRuleset::teardown()); !r)
      spdlog::warn("nftables: cannot remove table {} {}: {}", kNftFamily, kNftTable,
                   r.error().message);
    else
      spdlog::info("nftables: table {} {} removed", kNftFamily, kNftTable);
  }

 private:
  /// UDP has no end of flow: conntrack would keep sending a client to an endpoint that left,
  /// so its entries go (as kube-proxy does).
  static void flush_udp(const NftChange& change) {
    for (const UdpTarget& t : change.udp_gone) {
      std::vector<std::string> argv = {"conntrack", "-D", "-p", "udp"};
      if (!t.address.empty()) argv.insert(argv.end(), {"--orig-dst", t.address});
      argv.insert(argv.end(), {"--orig-port-dst", std::to_string(t.port), "--dst-nat", t.endpoint});
      auto r = run_command(argv);
      if (!r) {
        spdlog::warn("nftables: cannot flush UDP conntrack entries: {}", r.error().message);
        return;
      }
      spdlog::debug("nftables: UDP flows {}:{} → {} flushed", t.address, t.port, t.endpoint);
    }
    // A UDP Service that had no endpoint: its clients' entries were made without DNAT and
    // would keep them from ever reaching the new endpoints.
    for (const auto& [address, port] : change.udp_new) {
      std::vector<std::string> argv = {"conntrack", "-D", "-p", "udp"};
      if (!address.empty()) argv.insert(argv.end(), {"--orig-dst", address});
      argv.insert(argv.end(), {"--orig-port-dst", std::to_string(port)});
      if (auto r = run_command(argv); !r) {
        spdlog::warn("nftables: cannot flush UDP conntrack entries: {}", r.error().message);
        return;
      }
    }
  }

  std::mutex mutex_;
  std::unique_ptr<NftRunner> runner_;
  std::unique_ptr<DataPlane> health_;
  NftRuleset ruleset_;
  bool reload_ = false;  // the kernel's table may differ from ruleset_'s state
  bool started_ = false;
  bool warned_ipv6_ = false;
};

}  // namespace

Result<std::unique_ptr<DataPlane>> make_nftables_data_plane(const NftablesOptions& options) {
  auto plane = std::make_unique<NftablesDataPlane>(options);
  if (auto r = plane->start(); !r) return std::unexpected(r.error());
  return std::unique_ptr<DataPlane>(std::move(plane));
}

}  // namespace kedge::l4
