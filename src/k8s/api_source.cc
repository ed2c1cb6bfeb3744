#include "k8s/api_source.h"

#include "k8s/backoff.h"
#include "k8s/decode.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <random>

namespace kedge::k8s {

namespace asio = boost::asio;
using nlohmann::json;
using Millis = std::chrono::milliseconds;

namespace {

constexpr ApiResource kResources[] = {
    {Kind::Service, "v1", "Service", "/api/v1", "services", true, ""},
    {Kind::EndpointSlice, "discovery.k8s.io/v1", "EndpointSlice", "/apis/discovery.k8s.io/v1",
     "endpointslices", true, ""},
    {Kind::Ingress, "networking.k8s.io/v1", "Ingress", "/apis/networking.k8s.io/v1", "ingresses",
     true, ""},
    {Kind::IngressClass, "networking.k8s.io/v1", "IngressClass", "/apis/networking.k8s.io/v1",
     "ingressclasses", false, ""},
    {Kind::Secret, "v1", "Secret", "/api/v1", "secrets", true, "type=kubernetes.io/tls"},
};

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// True when two versions of an object differ in more than what kedge itself writes and never
/// reads: an Ingress's status (kedge's status write comes back as a MODIFIED event) and the
/// bookkeeping fields that change with every write.
bool differs_for_routing(Kind kind, const json& before, const json& after) {
  if (kind != Kind::Ingress) return true;
  auto strip = [](json object) {
    object.erase("status");
    if (auto md = object.find("metadata"); md != object.end() && md->is_object()) {
      md->erase("resourceVersion");
      md->erase("managedFields");
    }
    return object;
  };
  return strip(before) != strip(after);
}

std::string meta_string(const json& object, const char* key) {
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) return "";
  auto it = md->find(key);
  return it != md->end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

std::span<const ApiResource> watched_resources() { return kResources; }

const ApiResource* api_resource(Kind kind) {
  for (const ApiResource& r : kResources)
    if (r.kind == kind) return &r;
  return nullptr;
}

std::string url_encode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string collection_path(const ApiResource& r, const std::string& namespace_) {
  if (!r.namespaced || namespace_.empty()) return fmt::format("{}/{}", r.prefix, r.plural);
  return fmt::format("{}/namespaces/{}/{}", r.prefix, namespace_, r.plural);
}

std::string object_path(const ApiResource& r, const std::string& namespace_,
                        const std::string& name) {
  return collection_path(r, r.namespaced ? namespace_ : "") + "/" + name;
}

ApiSource::ApiSource(std::shared_ptr<ApiClient> client, ApiSourceOptions options,
                     std::function<void()> on_change)
    : client_(std::move(client)),
      options_(std::move(options)),
      on_change_(std::move(on_change)),
      kinds_(std::size(kResources)) {}

ApiSource::Entry ApiSource::decode(const ApiResource& r, json object, const Entry* previous) const {
  // List items carry no kind or apiVersion; watch objects do. Either way the stored JSON has
  // them, as the read API serves it.
  object["apiVersion"] = r.api_version;
  object["kind"] = r.kind_name;
  Entry entry;
  entry.resource_version = resource_version_of(object);
  DecodeOutcome outcome = decode_object(object, Origin{"api", 0}, nullptr, entry.issues);
  if (outcome.stored)
    entry.good = std::make_shared<const StoredObject>(std::move(*outcome.stored));
  else if (previous)
    entry.good = previous->good;  // the last good version keeps serving
  return entry;
}

bool ApiSource::routing_change(Kind kind, const Entry* previous, const Entry& next) {
  if (!previous || !previous->good || !next.good || next.good == previous->good) return true;
  if (!previous->issues.empty() || !next.issues.empty()) return true;
  return differs_for_routing(kind, previous->good->raw.parse(), next.good->raw.parse());
}

void ApiSource::store_entry(const ApiResource& r, const std::pair<std::string, std::string>& key,
                            const Entry& entry) {
  ObjectKey object_key{r.kind, key.first, key.second};
  if (!entry.good)
    store_.erase(object_key);
  else if (store_.find(object_key) != entry.good.get())
    store_.upsert(entry.good);
}

void ApiSource::changed_locked() {
  ++version_;
  ++counters_.changes;
}

bool ApiSource::apply_list(size_t index, const json& items) {
  const ApiResource& r = kResources[index];
  std::lock_guard lock(mutex_);
  KindState& state = kinds_[index];
  Entries next;
  bool changed = !state.synced;
  for (const json& item : items) {
    if (!item.is_object()) continue;
    auto key = std::make_pair(r.namespaced ? meta_string(item, "namespace") : std::string(),
                              meta_string(item, "name"));
    auto old = state.entries.find(key);
    if (old != state.entries.end() && old->second.resource_version == resource_version_of(item) &&
        !old->second.resource_version.empty()) {
      next.emplace(key, std::move(old->second));  // unchanged: keep it, decode nothing
      state.entries.erase(old);
      continue;
    }
    const Entry* previous = old == state.entries.end() ? nullptr : &old->second;
    Entry entry = decode(r, item, previous);
    if (routing_change(r.kind, previous, entry))
      changed = true;
    else
      ++version_;  // the store shows the new version; nothing to translate again
    if (old != state.entries.end()) state.entries.erase(old);
    store_entry(r, key, entry);
    next.emplace(key, std::move(entry));
  }
  if (!state.entries.empty()) changed = true;  // objects that are gone
  for (const auto& [key, gone] : state.entries)
    store_.erase(ObjectKey{r.kind, key.first, key.second});
  state.entries = std::move(next);
  state.synced = true;
  ++counters_.lists;
  if (changed) changed_locked();
  return changed;
}

bool ApiSource::apply_event(size_t index, const WatchEvent& event) {
  const ApiResource& r = kResources[index];
  if (event.type != WatchEventType::Added && event.type != WatchEventType::Modified &&
      event.type != WatchEventType::Deleted)
    return false;
  auto key = std::make_pair(r.namespaced ? meta_string(event.object, "namespace") : std::string(),
                            meta_string(event.object, "name"));
  std::lock_guard lock(mutex_);
  KindState& state = kinds_[index];
  ++counters_.watch_events;
  auto old = state.entries.find(key);
  if (event.type == WatchEventType::Deleted) {
    if (old == state.entries.end()) return false;
    state.entries.erase(old);
    store_.erase(ObjectKey{r.kind, key.first, key.second});
    changed_locked();
    return true;
  }
  if (old != state.entries.end() &&
      old->second.resource_version == resource_version_of(event.object))
    return false;  // already seen (e.g. the same object in a list and the watch after it)
  const Entry* previous = old == state.entries.end() ? nullptr : &old->second;
  Entry entry = decode(r, event.object, previous);
  bool relevant = routing_change(r.kind, previous, entry);
  store_entry(r, key, entry);
  state.entries[key] = std::move(entry);
  if (!relevant) {
    ++version_;  // the store shows the new version; nothing to translate again
    return false;
  }
  changed_locked();
  return true;
}

SourceLoad ApiSource::reload() {
  std::lock_guard lock(mutex_);
  if (cached_version_ == version_) return cached_;
  SourceLoad load;
  load.store = store_;  // shared until the next change writes to it
  for (const KindState& state : kinds_)
    for (const auto& [key, entry] : state.entries)
      load.issues.insert(load.issues.end(), entry.issues.begin(), entry.issues.end());
  cached_ = load;
  cached_version_ = version_;
  return load;
}

std::vector<std::string> ApiSource::pending_kinds() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (size_t i = 0; i < kinds_.size(); ++i)
    if (!kinds_[i].synced) out.emplace_back(kResources[i].kind_name);
  return out;
}

ApiSource::Counters ApiSource::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

void ApiSource::start(asio::io_context& ioc) {
  for (size_t i = 0; i < std::size(kResources); ++i)
    asio::co_spawn(ioc, reflect(i), asio::detached);
}

asio::awaitable<Result<ApiSource::Listed>> ApiSource::list_all(const ApiResource& r) {
  Listed out;
  std::string cont;
  std::string base = collection_path(r, options_.namespace_);
  for (int page = 0; page < 1000000; ++page) {
    std::string target = fmt::format("{}?limit={}", base, options_.page_size);
    if (!r.field_selector.empty()) target += "&fieldSelector=" + url_encode(r.field_selector);
    if (!cont.empty()) target += "&continue=" + url_encode(cont);
    auto resp = co_await client_->request("GET", target);
    if (!resp) co_return fail(resp.error().message);
    if (resp->status == 410 && !cont.empty()) {
      // The continue token expired mid-list: start over for a consistent list.
      spdlog::info("api: list of {} expired between pages; listing again", r.plural);
      out = Listed{};
      cont.clear();
      continue;
    }
    json body = resp->json();
    if (resp->status != 200) {
      ApiStatus st = api_status_of(body);
      co_return fail(fmt::format("list {}: HTTP {} {}", r.plural, resp->status,
                                 st.message.empty() ? resp->body.substr(0, 200) : st.message));
    }
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array())
      co_return fail(fmt::format("list {}: the answer is not a list", r.plural));
    for (json& item : body["items"]) out.items.push_back(std::move(item));
    out.resource_version = resource_version_of(body);
    cont = meta_string(body, "continue");
    if (cont.empty()) break;
  }
  co_return out;
}

asio::awaitable<void> ApiSource::reflect(size_t index) {
  const ApiResource& r = kResources[index];
  Backoff backoff(options_.backoff_initial, options_.backoff_max);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto sleep = [&timer](Millis d) -> asio::awaitable<void> {
    timer.expires_after(d);
    co_await timer.async_wait(use_tuple);
  };
  std::minstd_rand rng{std::random_device{}()};
  std::string rv;
  bool need_list = true;
  while (true) {
    if (need_list) {
      auto listed = co_await list_all(r);
      if (!listed) {
        Millis delay = backoff.next();
        spdlog::warn("api: {}; retrying in {} ms", listed.error().message, delay.count());
        co_await sleep(delay);
        continue;
      }
      bool changed = apply_list(index, listed->items);
      spdlog::info("api: listed {} {} at resourceVersion {}{}", listed->items.size(), r.plural,
                   listed->resource_version, changed ? "" : " (no change)");
      if (changed && on_change_) on_change_();
      rv = listed->resource_version;
      need_list = false;
      backoff.reset();
    }
    int timeout_s = options_.watch_timeout_min_s +
                    static_cast<int>(rng() % static_cast<unsigned>(options_.watch_timeout_min_s));
    std::string target =
        fmt::format("{}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}",
                    collection_path(r, options_.namespace_), url_encode(rv), timeout_s);
    if (!r.field_selector.empty()) target += "&fieldSelector=" + url_encode(r.field_selector);
    LineFramer framer;
    bool relist = false, expired = false;
    auto on_line = [&](std::string_view line) {
      if (relist) return;
      auto event = parse_watch_event(line);
      if (!event) {
        spdlog::warn("api: watch {}: {}; listing again", r.plural, event.error().message);
        relist = true;
        return;
      }
      if (event->type == WatchEventType::Error) {
        ApiStatus st = api_status_of(event->object);
        expired = st.code == 410;
        if (expired)
          spdlog::info("api: watch {} expired ({}); listing again", r.plural, st.message);
        else
          spdlog::warn("api: watch {}: error {} {}: {}", r.plural, st.code, st.reason, st.message);
        relist = true;
        return;
      }
      if (std::string v = resource_version_of(event->object); !v.empty()) rv = v;
      if (event->type != WatchEventType::Bookmark && apply_event(index, *event) && on_change_)
        on_change_();
    };
    auto started = std::chrono::steady_clock::now();
    std::string error_body;
    auto status = co_await client_->stream(
        target,
        [&](std::string_view bytes) {
          if (!framer.feed(bytes, on_line)) {
            spdlog::warn("api: watch {}: an event exceeds the size limit", r.plural);
            relist = true;
          }
          return !relist;
        },
        Millis((timeout_s + 60) * 1000), &error_body);
    bool quick = std::chrono::steady_clock::now() - started < std::chrono::seconds(1);
    if (!status) {
      Millis delay = backoff.next();
      spdlog::warn("api: {}; listing again in {} ms", status.error().message, delay.count());
      need_list = true;
      co_await sleep(delay);
    } else if (*status != 200) {
      ApiStatus st = api_status_of(json::parse(error_body, nullptr, false));
      expired = *status == 410;
      need_list = true;
      if (!expired) {
        Millis delay = backoff.next();
        spdlog::warn("api: watch {}: HTTP {} {}; listing again in {} ms", r.plural, *status,
                     st.message, delay.count());
        co_await sleep(delay);
      }
    } else if (relist) {
      need_list = true;
      if (!expired) co_await sleep(backoff.next());
    } else if (quick) {
      co_await sleep(backoff.next());  // a server that ends every watch at once: slow down
    } else {
      backoff.reset();  // the watch timed out as asked: watch again from rv
    }
  }
}

}  // namespace kedge::k8s
