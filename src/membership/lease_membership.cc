#include "membership/lease_membership.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <ctime>

namespace kedge::membership {

using nlohmann::json;

std::string micro_time(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06d}Z", tm, static_cast<int>(us % 1000000));
}

LeaseMembership::LeaseMembership(ApiCall call, LeaseMembershipConfig config)
    : call_(std::move(call)), config_(std::move(config)) {
  thread_ = std::thread([this] { run(); });
}

LeaseMembership::~LeaseMembership() { stop(); }

void LeaseMembership::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  // Our Lease goes, so the other nodes take over at once.
  if (auto r = call_("DELETE", lease_path(), ""); !r)
    spdlog::warn("membership: cannot delete Lease: {}", r.error().message);
}

std::set<std::string> LeaseMembership::live_nodes() {
  std::lock_guard lock(mutex_);
  std::set<std::string> out = others_;
  out.erase(config_.node);
  if (!stopping_ && renewed_ && Clock::now() - *renewed_ < config_.lease_duration)
    out.insert(config_.node);
  return out;
}

std::string LeaseMembership::lease_path() const {
  return fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}{}", config_.namespace_,
                     config_.prefix, config_.node);
}

json LeaseMembership::lease_object(const std::string& resource_version) const {
  json meta = {{"name", config_.prefix + config_.node},
               {"namespace", config_.namespace_},
               {"labels", {{"app.kubernetes.io/name", "kedge"}}}};
  if (!resource_version.empty()) meta["resourceVersion"] = resource_version;
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", meta},
          {"spec",
           {{"holderIdentity", config_.node},
            {"leaseDurationSeconds", config_.lease_duration.count()},
            {"acquireTime", acquire_time_},
            {"renewTime", micro_time(std::chrono::system_clock::now())}}}};
}

bool LeaseMembership::renew_once() {
  if (acquire_time_.empty()) acquire_time_ = micro_time(std::chrono::system_clock::now());
  auto version = [](const ApiReply& r) {
    json j = json::parse(r.body, nullptr, false);
    return j.is_object() && j["metadata"].is_object()
               ? j["metadata"].value("resourceVersion", std::string())
               : std::string();
  };
  if (resource_version_.empty()) {
    auto got = call_("GET", lease_path(), "");
    if (!got) return false;
    if (got->status == 404) {
      auto made = call_(
          "POST",
          fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases", config_.namespace_),
          lease_object("").dump());
      if (!made || made->status != 201) return false;
      resource_version_ = version(*made);
      return true;
    }
    if (got->status != 200) return false;
    resource_version_ = version(*got);
  }
  auto put = call_("PUT", lease_path(), lease_object(resource_version_).dump());
  if (!put || put->status != 200) {
    resource_version_.clear();  // read it again next time (409: someone else wrote it)
    return false;
  }
  resource_version_ = version(*put);
  return true;
}

void LeaseMembership::poll_once() {
  auto leases = call_(
      "GET", fmt::format("/apis/coordination.k8s.io/v1/namespaces/{}/leases", config_.namespace_),
      "");
  std::set<std::string> live;
  const auto now = Clock::now();
  if (leases && leases->status == 200) {
    auto nodes = call_("GET", "/api/v1/nodes", "");
    json node_list;
    if (nodes && nodes->status == 200) node_list = json::parse(nodes->body, nullptr, false);
    live = evaluate(json::parse(leases->body, nullptr, false),
                    node_list.is_object() ? &node_list : nullptr, config_.prefix, seen_, now);
  } else {
    // Without the API nobody can be confirmed: the others' Leases age out here too.
    for (const auto& [name, s] : seen_)
      if (now - s.changed < s.duration) live.insert(name.substr(config_.prefix.size()));
  }
  std::lock_guard lock(mutex_);
  if (live != others_)
    spdlog::info("membership: live nodes {}", fmt::join(live.begin(), live.end(), ","));
  others_ = std::move(live);
}

void LeaseMembership::run() {
  auto next_renew = Clock::now();
  bool was_ok = true;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    const auto started = Clock::now();
    if (started >= next_renew) {
      bool ok = renew_once();
      if (ok != was_ok)
        spdlog::log(ok ? spdlog::level::info : spdlog::level::warn, "membership: Lease {}{} {}",
                    config_.prefix, config_.node, ok ? "renewed" : "not renewed");
      was_ok = ok;
      next_renew = started + config_.renew_interval;
      std::lock_guard relock(mutex_);
      if (ok) renewed_ = started;
    }
    poll_once();
    lock.lock();
    wake_.wait_until(lock, std::min(next_renew, started + config_.poll_interval));
  }
}

std::set<std::string> LeaseMembership::evaluate(const json& leases, const json* nodes,
                                                const std::string& prefix,
                                                std::map<std::string, Seen>& seen,
                                                Clock::time_point now) {
  std::set<std::string> not_ready;
  if (nodes && (*nodes)["items"].is_array())
    for (const auto& n : (*nodes)["items"]) {
      bool ready = false;
      if (n["status"]["conditions"].is_array())
        for (const auto& c : n["status"]["conditions"])
          if (c.value("type", "") == "Ready" && c.value("status", "") == "True") ready = true;
      if (!ready) not_ready.insert(n["metadata"].value("name", ""));
    }
  std::set<std::string> present, live;
  if (leases["items"].is_array())
    for (const auto& l : leases["items"]) {
      std::string name = l["metadata"].value("name", "");
      if (!name.starts_with(prefix)) continue;
      const json& spec = l["spec"];
      std::string holder = spec.value("holderIdentity", "");
      std::string renew = spec.value("renewTime", "");
      int duration = spec.value("leaseDurationSeconds", 0);
      if (holder.empty() || duration <= 0) continue;
      present.insert(name);
      auto [it, fresh] = seen.try_emplace(name);
      if (fresh || it->second.renew_time != renew) {
        it->second.renew_time = renew;
        it->second.changed = now;
      }
      it->second.duration = std::chrono::seconds(duration);
      if (now - it->second.changed < it->second.duration && !not_ready.contains(holder))
        live.insert(holder);
    }
  std::erase_if(seen, [&](const auto& kv) { return !present.contains(kv.first); });
  return live;
}

Result<std::shared_ptr<LeaseMembership>> make_lease_membership(const std::string& url,
                                                               const std::string& token,
                                                               const std::string& node,
                                                               int lease_duration_s) {
  auto server = parse_http_url(url);
  if (!server) return std::unexpected(server.error());
  LeaseMembershipConfig c;
  c.node = node;
  c.lease_duration = std::chrono::seconds(lease_duration_s);
  c.renew_interval = std::chrono::milliseconds(lease_duration_s * 1000 / 4);
  c.poll_interval = std::chrono::milliseconds(std::min(250, lease_duration_s * 1000 / 8));
  // Each call may take at most a quarter of the Lease, so a stuck server cannot keep this node
  // from noticing it is no longer renewing.
  auto timeout = std::chrono::milliseconds(lease_duration_s * 1000 / 4);
  auto [host, port] = *server;
  ApiCall call = [host, port, token, timeout](const std::string& method, const std::string& target,
                                              const std::string& body) {
    return http_call(host, port, method, target, body, token, timeout);
  };
  return std::make_shared<LeaseMembership>(std::move(call), c);
}

}  // namespace kedge::membership
