#pragma once

#include "common/result.h"
#include "model/snapshot.h"

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kedge::l4 {

/// Which nodes are alive, as the cluster sees them (Node readiness and each kedge instance's
/// Lease with the Kubernetes API; this node alone in manifest mode).
/// Thread: live_nodes() from any thread; implementations keep their own state current.
class Membership {
 public:
  virtual ~Membership() = default;
  /// Names of the nodes alive now. This node is in it only while it knows itself alive (its
  /// own Lease renewed in time).
  virtual std::set<std::string> live_nodes() = 0;
};

/// Manifest mode on one machine: the local node, always alive, owns every address.
std::shared_ptr<Membership> make_static_membership(std::string node);

/// The node that answers for `ip`, as MetalLB's L2 mode chooses it: candidates ordered by
/// SHA-256 of "node#ip", the smallest first. Every node computes the same answer from the same
/// candidates. Empty when there is no candidate.
std::string choose_owner(std::string_view ip, const std::set<std::string>& candidates);

/// Nodes that may answer for each LoadBalancer IP of a snapshot: nullopt = any live node; with
/// externalTrafficPolicy Local, only the nodes with a ready endpoint of the Service.
std::map<std::string, std::optional<std::set<std::string>>> lb_candidates(
    const model::Snapshot& snapshot);

/// Sends one gratuitous ARP request for `ip` from `interface`'s MAC (raw AF_PACKET socket;
/// needs CAP_NET_RAW), as `arping -U` does.
Status send_gratuitous_arp(const std::string& interface, const std::string& ip);

struct L2Options {
  std::string node_name;
  std::string interface;                    // where claimed addresses are added
  std::chrono::milliseconds interval{100};  // how often ownership is recomputed
  std::vector<std::chrono::milliseconds> announce{std::chrono::milliseconds(0),
                                                  std::chrono::milliseconds(500),
                                                  std::chrono::milliseconds(2000)};
};

/// Announces the LoadBalancer IPs this node owns on a shared L2 segment (MetalLB's L2 mode):
/// the owner adds the address to its interface (so the kernel answers ARP for it and the
/// nftables data plane takes its traffic), sends gratuitous ARPs when it claims it (at once,
/// then twice more in case one is lost), and deletes it as soon as another node owns it or
/// this node is no longer alive. stop() releases every address.
/// Thread: apply() and stop() from any thread; the work runs on its own thread.
class L2Announcer {
 public:
  L2Announcer(L2Options options, std::shared_ptr<Membership> membership);
  ~L2Announcer();
  L2Announcer(const L2Announcer&) = delete;
  L2Announcer& operator=(const L2Announcer&) = delete;

  void apply(model::SnapshotConstPtr snapshot);
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  void run();
  void reconcile();
  void claim(const std::string& ip);
  void release(const std::string& ip);

  L2Options options_;
  std::shared_ptr<Membership> membership_;
  std::mutex mutex_;
  std::condition_variable wake_;
  model::SnapshotConstPtr snapshot_;
  bool stopping_ = false;
  std::map<std::string, std::vector<Clock::time_point>> owned_;  // ip → announcements due
  std::thread thread_;
};

}  // namespace kedge::l4
