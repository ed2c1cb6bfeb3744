#pragma once

#include "k8s/api_client.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace kedge::control {

using Millis = std::chrono::milliseconds;

struct LeaderElectionConfig {
  std::string namespace_ = "default";
  std::string name = "kedge-leader";
  std::string identity;          // unique per replica: pod name and a random suffix
  Millis lease_duration{15000};  // client-go's defaults
  Millis renew_deadline{10000};
  Millis retry_period{2000};
};

/// A coordination.k8s.io/v1 Lease as read from the API.
struct LeaseRecord {
  std::string holder;
  int lease_duration_s = 0;
  std::string acquire_time, renew_time;
  int transitions = 0;
  std::string resource_version;
  nlohmann::json raw;
  static LeaseRecord from_json(const nlohmann::json& lease);
  /// Everything that identifies one write of the lease by its holder.
  bool same_record(const LeaseRecord& other) const {
    return holder == other.holder && renew_time == other.renew_time &&
           acquire_time == other.acquire_time && transitions == other.transitions &&
           lease_duration_s == other.lease_duration_s;
  }
};

/// A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits.
std::string micro_time(std::chrono::system_clock::time_point t);

/// client-go's tryAcquireOrRenew decision, without I/O. A lease held by someone else counts as
/// expired once it has not changed for its leaseDurationSeconds, measured on this replica's
/// own clock from when the change was observed (so clocks of replicas need not agree).
/// Thread: one owner.
class LeaseLogic {
 public:
  enum class Action { Create, Acquire, Renew, Wait };
  using Clock = std::chrono::steady_clock;

  explicit LeaseLogic(LeaderElectionConfig config) : config_(std::move(config)) {}

  /// What to do after reading the lease (nullopt: it does not exist) at `now`.
  Action observe(const std::optional<LeaseRecord>& lease, Clock::time_point now);
  /// The Lease object to write for `action` at wall-clock time `wall`.
  nlohmann::json desired(const std::optional<LeaseRecord>& lease, Action action,
                         std::chrono::system_clock::time_point wall) const;
  /// The Lease that gives leadership up: holderIdentity cleared, leaseDurationSeconds 1 (as
  /// client-go's ReleaseOnCancel writes it).
  nlohmann::json released(const LeaseRecord& lease,
                          std::chrono::system_clock::time_point wall) const;
  const LeaderElectionConfig& config() const { return config_; }

 private:
  LeaderElectionConfig config_;
  std::optional<LeaseRecord> observed_;
  Clock::time_point observed_at_{};
};

/// Leader election over a Lease, as client-go's leaderelection package: candidates try every
/// retry period (jittered); the leader renews every retry period and steps down when it could
/// not renew for the renew deadline. On a clean shutdown the leader releases the lease so
/// another replica takes over at once.
/// Thread: runs on the io_context given to start(); is_leader() from any thread; on_change runs
/// on the io_context thread.
class LeaderElector {
 public:
  LeaderElector(std::shared_ptr<k8s::ApiClient> client, LeaderElectionConfig config,
                std::function<void(bool leading)> on_change);
  void start(boost::asio::io_context& ioc);
  bool is_leader() const { return leading_.load(); }
  /// Stops trying and, when leading, releases the lease. Awaited on the io_context.
  boost::asio::awaitable<void> release();

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> try_acquire_or_renew();
  void set_leading(bool leading);
  std::string lease_path() const;

  std::shared_ptr<k8s::ApiClient> client_;
  LeaseLogic logic_;
  std::function<void(bool)> on_change_;
  std::atomic<bool> leading_{false};
  bool stopped_ = false;
  std::optional<LeaseRecord> last_written_;
};

}  // namespace kedge::control
