#pragma once

#include "common/result.h"
#include "l4/l2_announcer.h"
#include "membership/http_call.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

namespace kedge::membership {

struct LeaseMembershipConfig {
  std::string node;                            // this node's name (--node-name)
  std::string namespace_ = "kube-node-lease";  // where the instances' Leases live
  std::string prefix = "kedge-";               // Lease name: prefix + node name
  std::chrono::seconds lease_duration{2};      // leaseDurationSeconds
  std::chrono::milliseconds renew_interval{500};
  std::chrono::milliseconds poll_interval{250};  // how often the others' Leases are read
};

/// One API request: method, target (path and query), JSON body → status and body.
using ApiCall = std::function<Result<ApiReply>(const std::string& method, const std::string& target,
                                               const std::string& body)>;

/// Cluster membership from the Kubernetes API: every kedge instance keeps a
/// coordination.k8s.io/v1 Lease named prefix+node (holderIdentity = node) renewed every
/// renew_interval; a node is alive while its Lease was renewed within its leaseDurationSeconds
/// (measured on this instance's clock from when the change was seen, as client-go does, so
/// clocks need not agree) and its Node object, when there is one, is Ready. This node counts
/// itself alive only while its own renewals succeed. A clean stop deletes its Lease, so the
/// others take over at once.
/// Thread: live_nodes() from any thread; the API calls run on its own thread.
class LeaseMembership final : public l4::Membership {
 public:
  LeaseMembership(ApiCall call, LeaseMembershipConfig config);
  ~LeaseMembership() override;
  LeaseMembership(const LeaseMembership&) = delete;
  LeaseMembership& operator=(const LeaseMembership&) = delete;

  std::set<std::string> live_nodes() override;
  void stop();

  using Clock = std::chrono::steady_clock;
  struct Seen {
    std::string renew_time;
    Clock::time_point changed;
    std::chrono::seconds duration{0};
  };
  /// The pure part: the holders of live Leases given the Lease and Node lists read (JSON) at
  /// `now`. Updates `seen` (lease name → last renewTime and when it changed).
  static std::set<std::string> evaluate(const nlohmann::json& leases, const nlohmann::json* nodes,
                                        const std::string& prefix,
                                        std::map<std::string, Seen>& seen, Clock::time_point now);

 private:
  void run();
  bool renew_once();
  void poll_once();
  std::string lease_path() const;
  nlohmann::json lease_object(const std::string& resource_version) const;

  ApiCall call_;
  LeaseMembershipConfig config_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::set<std::string> others_;              // alive per the last poll
  std::optional<Clock::time_point> renewed_;  // last successful renewal of our Lease
  std::map<std::string, Seen> seen_;          // the thread's own
  std::string resource_version_;
  std::string acquire_time_;
  std::thread thread_;
};

/// A LeaseMembership for `node` talking plain HTTP to the API server at `url`
/// ("http://IP:PORT", bearer `token` when not empty); the Lease lasts `lease_duration_s`,
/// renewed every quarter of it, the others read every eighth (at most every 250 ms).
Result<std::shared_ptr<LeaseMembership>> make_lease_membership(const std::string& url,
                                                               const std::string& token,
                                                               const std::string& node,
                                                               int lease_duration_s);

/// A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits.
std::string micro_time(std::chrono::system_clock::time_point t);

}  // namespace kedge::membership
