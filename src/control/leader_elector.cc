#include "control/leader_elector.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <ctime>
#include <random>

namespace kedge::control {

namespace asio = boost::asio;
using nlohmann::json;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string text_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}
int int_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int>() : 0;
}
int seconds_up(Millis d) {
  return static_cast<int>(std::max<int64_t>(1, (d.count() + 999) / 1000));
}
}  // namespace

LeaseRecord LeaseRecord::from_json(const json& lease) {
  LeaseRecord r;
  r.raw = lease;
  if (auto md = lease.find("metadata"); md != lease.end() && md->is_object())
    r.resource_version = text_of(*md, "resourceVersion");
  auto spec = lease.find("spec");
  if (spec == lease.end() || !spec->is_object()) return r;
  r.holder = text_of(*spec, "holderIdentity");
  r.lease_duration_s = int_of(*spec, "leaseDurationSeconds");
  r.acquire_time = text_of(*spec, "acquireTime");
  r.renew_time = text_of(*spec, "renewTime");
  r.transitions = int_of(*spec, "leaseTransitions");
  return r;
}

std::string micro_time(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us % 1000000);
}

LeaseLogic::Action LeaseLogic::observe(const std::optional<LeaseRecord>& lease,
                                       Clock::time_point now) {
  if (!lease) return Action::Create;
  if (!observed_ || !observed_->same_record(*lease)) {
    observed_ = lease;
    observed_at_ = now;
  }
  if (lease->holder == config_.identity) return Action::Renew;
  if (lease->holder.empty()) return Action::Acquire;
  Millis duration =
      lease->lease_duration_s > 0 ? Millis(lease->lease_duration_s * 1000) : config_.lease_duration;
  return now < observed_at_ + duration ? Action::Wait : Action::Acquire;
}

json LeaseLogic::desired(const std::optional<LeaseRecord>& lease, Action action,
                         std::chrono::system_clock::time_point wall) const {
  json out = lease ? lease->raw : json::object();
  out["apiVersion"] = "coordination.k8s.io/v1";
  out["kind"] = "Lease";
  out["metadata"]["name"] = config_.name;
  out["metadata"]["namespace"] = config_.namespace_;
  if (action == Action::Create) out["metadata"].erase("resourceVersion");
  std::string now = micro_time(wall);
  json& spec = out["spec"];
  spec["holderIdentity"] = config_.identity;
  spec["leaseDurationSeconds"] = seconds_up(config_.lease_duration);
  spec["renewTime"] = now;
  bool keep = lease && lease->holder == config_.identity && !lease->acquire_time.empty();
  spec["acquireTime"] = keep ? lease->acquire_time : now;
  int transitions = lease ? lease->transitions : 0;
  if (lease && lease->holder != config_.identity) ++transitions;
  spec["leaseTransitions"] = transitions;
  return out;
}

json LeaseLogic::released(const LeaseRecord& lease,
                          std::chrono::system_clock::time_point wall) const {
  json out = lease.raw;
  std::string now = micro_time(wall);
  json& spec = out["spec"];
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  spec["renewTime"] = now;
  spec["acquireTime"] = now;
  spec["leaseTransitions"] = lease.transitions;
  return out;
}

LeaderElector::LeaderElector(std::shared_ptr<k8s::ApiClient> client, LeaderElectionConfig config,
                             std::function<void(bool)> on_change)
    : client_(std::move(client)), logic_(std::move(config)), on_change_(std::move(on_change)) {}

std::string LeaderElector::lease_path() const {
  return fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
                     logic_.config().namespace_, logic_.config().name);
}

void LeaderElector::start(asio::io_context& ioc) { asio::co_spawn(ioc, run(), asio::detached); }

void LeaderElector::set_leading(bool leading) {
  if (leading_.exchange(leading) == leading) return;
  const auto& c = logic_.config();
  if (leading)
    spdlog::info("leader election: {} now leads (lease {}/{})", c.identity, c.namespace_, c.name);
  else
    spdlog::warn("leader election: {} no longer leads (lease {}/{})", c.identity, c.namespace_,
                 c.name);
  if (on_change_) on_change_(leading);
}

asio::awaitable<bool> LeaderElector::try_acquire_or_renew() {
  auto got = co_await client_->request("GET", lease_path());
  if (!got) {
    spdlog::warn("leader election: {}", got.error().message);
    co_return false;
  }
  std::optional<LeaseRecord> lease;
  if (got->status == 200) {
    lease = LeaseRecord::from_json(got->json());
  } else if (got->status != 404) {
    spdlog::warn("leader election: GET lease: HTTP {}", got->status);
    co_return false;
  }
  auto action = logic_.observe(lease, LeaseLogic::Clock::now());
  // Released meanwhile (shutdown): never take the Lease again.
  if (action == LeaseLogic::Action::Wait || stopped_) co_return false;
  json body = logic_.desired(lease, action, std::chrono::system_clock::now());
  const auto& c = logic_.config();
  // No co_await inside a conditional expression: g++ 12 destroys its temporaries twice.
  Result<k8s::ApiResponse> put = fail("not sent");
  if (action == LeaseLogic::Action::Create)
    put = co_await client_->request(
        "POST", fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases", c.namespace_),
        body.dump());
  else
    put = co_await client_->request("PUT", lease_path(), body.dump());
  if (!put) {
    spdlog::warn("leader election: {}", put.error().message);
    co_return false;
  }
  if (put->status == 409) co_return false;  // another replica wrote first
  if (put->status != 200 && put->status != 201) {
    spdlog::warn("leader election: write lease: HTTP {}: {:.200}", put->status, put->body);
    co_return false;
  }
  LeaseRecord written = LeaseRecord::from_json(put->json());
  logic_.observe(written, LeaseLogic::Clock::now());
  last_written_ = std::move(written);
  co_return true;
}

asio::awaitable<void> LeaderElector::run() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::minstd_rand rng{std::random_device{}()};
  const auto& c = logic_.config();
  auto last_renew = std::chrono::steady_clock::now();
  while (!stopped_) {
    bool ok = co_await try_acquire_or_renew();
    if (stopped_) break;
    auto now = std::chrono::steady_clock::now();
    if (ok) {
      last_renew = now;
      set_leading(true);
    } else if (leading_ && now - last_renew > c.renew_deadline) {
      set_leading(false);
    }
    Millis wait = c.retry_period;
    if (!leading_) {  // candidates: wait.JitterUntil(retryPeriod, 1.2)
      std::uniform_real_distribution<double> jitter(0.0, 1.2);
      wait = Millis(static_cast<int64_t>(static_cast<double>(wait.count()) * (1 + jitter(rng))));
    }
    timer.expires_after(wait);
    co_await timer.async_wait(use_tuple);
  }
}

asio::awaitable<void> LeaderElector::release() {
  stopped_ = true;
  if (!leading_ || !last_written_) co_return;
  json body = logic_.released(*last_written_, std::chrono::system_clock::now());
  auto put =
      co_await client_->request("PUT", lease_path(), body.dump(), "application/json", Millis(3000));
  if (put && put->status == 200)
    spdlog::info("leader election: released lease {}/{}", logic_.config().namespace_,
                 logic_.config().name);
  else
    spdlog::warn("leader election: could not release the lease: {}",
                 put ? fmt::format("HTTP {}", put->status) : put.error().message);
  set_leading(false);
}

}  // namespace kedge::control
