#include "control/status_writer.h"

#include "control/leader_elector.h"
#include "k8s/api_source.h"
#include "k8s/backoff.h"
#include "translate/allocator.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kedge::control {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// status.loadBalancer.ingress of an object read back from the API server, or stored.
json current_entries(const json& object) {
  const json* p = &object;
  for (const char* key : {"status", "loadBalancer", "ingress"}) {
    if (!p->is_object() || !p->contains(key)) return json::array();
    p = &(*p)[key];
  }
  return p->is_array() ? *p : json::array();
}
json current_entries(const k8s::StoredObject& so) {
  return so.lb_status.is_array() ? so.lb_status : json::array();
}

json address_entry(const std::string& address) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(address, ec);
  return ec ? json{{"hostname", address}} : json{{"ip", address}};
}

bool ours(const k8s::Service& svc, bool default_class) {
  return svc.type == "LoadBalancer" &&
         (svc.load_balancer_class.empty()
              ? default_class
              : svc.load_balancer_class == translate::kLoadBalancerClass);
}

}  // namespace

json publish_entries(const StatusWriterOptions& options, const PublishedState& state) {
  json out = json::array();
  if (!options.publish_service.empty()) {
    auto slash = options.publish_service.find('/');
    std::string ns = options.publish_service.substr(0, slash);
    std::string name = slash == std::string::npos ? "" : options.publish_service.substr(slash + 1);
    const k8s::StoredObject* so = state.store.find({k8s::Kind::Service, ns, name});
    if (!so) return out;
    json from_status = current_entries(*so);
    if (!from_status.empty()) return from_status;
    const auto& svc = std::get<k8s::Service>(so->object);
    auto alloc = state.allocations->services.find(ns + "/" + name);
    if (alloc != state.allocations->services.end() && !alloc->second.load_balancer_ip.empty()) {
      out.push_back(address_entry(alloc->second.load_balancer_ip));
      return out;
    }
    json raw = so->raw.parse();
    if (auto ext = raw.find("spec"); ext != raw.end() && ext->contains("externalIPs"))
      for (const auto& ip : (*ext)["externalIPs"])
        if (ip.is_string()) out.push_back(address_entry(ip.get<std::string>()));
    if (out.empty() && !svc.cluster_ip.empty() && svc.cluster_ip != "None")
      out.push_back(address_entry(svc.cluster_ip));
    return out;
  }
  for (const auto& a : options.publish_addresses) out.push_back(address_entry(a));
  return out;
}

std::optional<json> desired_ingress_status(const json& current_status, bool served,
                                           const json& entries) {
  json current = current_status.is_array() ? current_status : json::array();
  if (served) {
    if (entries.empty() || current == entries) return std::nullopt;
    return entries;
  }
  if (!entries.empty() && current == entries) return json::array();
  return std::nullopt;
}

StatusWriter::StatusWriter(std::shared_ptr<k8s::ApiClient> client, StateSlot& slot,
                           StatusWriterOptions options)
    : client_(std::move(client)), slot_(slot), options_(std::move(options)) {}

void StatusWriter::start(asio::io_context& ioc) {
  ioc_ = &ioc;
  wake_ = std::make_unique<asio::steady_timer>(ioc);
  asio::co_spawn(ioc, run(), asio::detached);
}

void StatusWriter::poke() {
  if (!ioc_) return;
  asio::post(*ioc_, [this] {
    dirty_ = true;
    wake_->cancel();
  });
}

void StatusWriter::set_leading(bool leading) {
  if (!ioc_) return;
  asio::post(*ioc_, [this, leading] {
    leading_ = leading;
    if (leading) reported_.clear();  // a new leader reports what is wrong now
    dirty_ = true;
    wake_->cancel();
  });
}

asio::awaitable<void> StatusWriter::run() {
  k8s::Backoff backoff(Millis(250), Millis(30000));
  while (true) {
    if (!dirty_ || !leading_) {
      wake_->expires_after(std::chrono::hours(24));
      co_await wake_->async_wait(use_tuple);
      continue;
    }
    dirty_ = false;
    if (co_await reconcile()) {
      backoff.reset();
      continue;
    }
    dirty_ = true;  // something failed: try again after a pause
    wake_->expires_after(backoff.next());
    co_await wake_->async_wait(use_tuple);
  }
}

asio::awaitable<bool> StatusWriter::reconcile() {
  PublishedStateConstPtr state = slot_.get();
  if (!state || !state->snapshot) co_return true;
  bool ok = true;
  json entries = publish_entries(options_, *state);
  const auto& served = state->snapshot->served_ingresses;
  std::vector<std::pair<const k8s::StoredObject*, json>> writes;
  state->store.for_each<k8s::Ingress>([&](const k8s::Ingress& ing, const k8s::StoredObject& so) {
    bool is_served = served.contains(ing.meta.namespace_ + "/" + ing.meta.name);
    if (auto want = desired_ingress_status(so.lb_status, is_served, entries))
      writes.emplace_back(&so, std::move(*want));
  });
  state->store.for_each<k8s::Service>([&](const k8s::Service& svc, const k8s::StoredObject& so) {
    if (!options_.service_status || !ours(svc, options_.default_lb_class)) return;
    json want = json::array();
    auto alloc = state->allocations->services.find(svc.meta.namespace_ + "/" + svc.meta.name);
    if (alloc != state->allocations->services.end() && !alloc->second.load_balancer_ip.empty())
      want.push_back({{"ip", alloc->second.load_balancer_ip}});
    if (current_entries(so) != want) writes.emplace_back(&so, std::move(want));
  });
  for (auto& [so, want] : writes)
    if (!co_await write_status(k8s::kind_of(so->object), so->raw.parse(), want)) ok = false;
  if (!co_await emit_events(*state)) ok = false;
  co_return ok;
}

asio::awaitable<bool> StatusWriter::write_status(k8s::Kind kind, json object, const json& entries) {
  const k8s::ApiResource* r = k8s::api_resource(kind);
  const auto& meta = object["metadata"];
  std::string ns = meta.value("namespace", ""), name = meta.value("name", "");
  std::string path = k8s::object_path(*r, ns, name);
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (current_entries(object) == entries) co_return true;  // (re-read) already right
    if (entries.empty())
      object["status"]["loadBalancer"] = json::object();
    else
      object["status"]["loadBalancer"]["ingress"] = entries;
    auto put = co_await client_->request(
        "PUT", path + "/status", object.dump(-1, ' ', false, json::error_handler_t::replace));
    if (!put) {
      spdlog::warn("status: {}", put.error().message);
      co_return false;
    }
    if (put->status == 200) {
      spdlog::info("status: {} {}/{} status.loadBalancer.ingress = {}", r->kind_name, ns, name,
                   entries.dump(-1, ' ', false, json::error_handler_t::replace));
      co_return true;
    }
    if (put->status == 404) co_return true;  // gone meanwhile
    if (put->status != 409) {
      spdlog::warn("status: PUT {}/status: HTTP {}: {:.200}", path, put->status, put->body);
      co_return false;
    }
    // Conflict: someone changed the object since it was read; read it again and redo.
    auto fresh = co_await client_->request("GET", path);
    if (!fresh) co_return false;
    if (fresh->status == 404) co_return true;
    if (fresh->status != 200) co_return false;
    object = fresh->json();
  }
  spdlog::warn("status: {} {}/{}: still conflicting after 5 attempts", r->kind_name, ns, name);
  co_return false;
}

asio::awaitable<bool> StatusWriter::emit_events(const PublishedState& state) {
  bool ok = true;
  std::set<std::string> present;
  for (const k8s::Issue& issue : state.issues) {
    if (issue.kind.empty() || issue.name.empty()) continue;
    std::string id = fmt::format("{}/{}/{}/{}: {}", issue.kind, issue.namespace_, issue.name,
                                 issue.field, issue.message);
    present.insert(id);
    if (reported_.contains(id)) continue;
    json involved = {{"kind", issue.kind}, {"name", issue.name}};
    if (!issue.namespace_.empty()) involved["namespace"] = issue.namespace_;
    for (const auto& [key, so] : state.store) {
      if (std::string(k8s::kind_name(key.kind)) != issue.kind || key.name != issue.name ||
          key.namespace_ != issue.namespace_)
        continue;
      json raw = so->raw.parse();
      involved["apiVersion"] = raw.value("apiVersion", "");
      if (auto md = raw.find("metadata"); md != raw.end()) {
        involved["uid"] = md->value("uid", "");
        involved["resourceVersion"] = md->value("resourceVersion", "");
      }
    }
    std::string ns = issue.namespace_.empty() ? "default" : issue.namespace_;
    std::string now = micro_time(std::chrono::system_clock::now());
    std::string seconds = now.substr(0, 19) + "Z";
    json event = {
        {"apiVersion", "v1"},
        {"kind", "Event"},
        {"metadata", {{"generateName", issue.name + "."}, {"namespace", ns}}},
        {"involvedObject", involved},
        {"reason", "Refused"},
        {"message", issue.field.empty() ? issue.message : issue.field + ": " + issue.message},
        {"type", "Warning"},
        {"source", {{"component", "kedge"}}},
        {"reportingComponent", "kedge.dev/ingress-controller"},
        {"reportingInstance", options_.identity},
        {"firstTimestamp", seconds},
        {"lastTimestamp", seconds},
        {"count", 1}};
    auto post =
        co_await client_->request("POST", fmt::format("/api/v1/namespaces/{}/events", ns),
                                  event.dump(-1, ' ', false, json::error_handler_t::replace));
    if (post && (post->status == 201 || post->status == 200)) {
      reported_.insert(id);
    } else {
      spdlog::warn("events: cannot report {}: {}", id,
                   post ? fmt::format("HTTP {}", post->status) : post.error().message);
      ok = false;
    }
  }
  std::erase_if(reported_, [&](const std::string& id) { return !present.contains(id); });
  co_return ok;
}

}  // namespace kedge::control
