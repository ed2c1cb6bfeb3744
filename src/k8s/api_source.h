#pragma once

#include "k8s/api_client.h"
#include "k8s/source.h"
#include "k8s/watch_stream.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace kedge::k8s {

/// A kind as the API serves it.
struct ApiResource {
  Kind kind;
  std::string_view api_version;  // "v1", "networking.k8s.io/v1"
  std::string_view kind_name;    // "Ingress"
  std::string_view prefix;       // "/api/v1", "/apis/networking.k8s.io/v1"
  std::string_view plural;       // "ingresses"
  bool namespaced;
  std::string_view field_selector;  // "" or e.g. "type=kubernetes.io/tls"
};

/// The kinds the API source lists and watches: Service, EndpointSlice, Ingress, IngressClass
/// and Secrets of type kubernetes.io/tls (by field selector).
std::span<const ApiResource> watched_resources();
const ApiResource* api_resource(Kind kind);
/// /api/v1/namespaces/NS/services (NS empty or a cluster-scoped kind: /api/v1/services).
std::string collection_path(const ApiResource& r, const std::string& namespace_);
std::string object_path(const ApiResource& r, const std::string& namespace_,
                        const std::string& name);
std::string url_encode(std::string_view text);

struct ApiSourceOptions {
  std::string namespace_;  // "" watches all namespaces
  int page_size = 500;     // list `limit` (--api-list-limit)
  std::chrono::milliseconds backoff_initial{250};
  std::chrono::milliseconds backoff_max{30000};
  int watch_timeout_min_s = 300;  // each watch asks for timeoutSeconds in [min, 2*min)
};

/// The Kubernetes API source: for each kind, a paginated list, then a watch from the list's
/// resourceVersion (with bookmarks) until it ends, breaks or expires; a fresh list after a 410
/// or a broken stream, with jittered exponential back-off. Objects are decoded and validated by
/// the same decode_object as manifests; an invalid version keeps the last good one.
/// A relist keeps the objects whose resourceVersion did not change, and signals a change only
/// when something did, so catching up after an outage costs no needless translation.
/// Thread: the list/watch loops run on the io_context given to start(); reload() on the control
/// thread; pending_kinds() from any thread.
class ApiSource : public Source {
 public:
  ApiSource(std::shared_ptr<ApiClient> client, ApiSourceOptions options,
            std::function<void()> on_change);

  /// Spawns one list/watch loop per kind on `ioc`. The loops end when `ioc` stops.
  void start(boost::asio::io_context& ioc);
  SourceLoad reload() override;

  /// Kinds whose first complete list has not arrived yet ("Service", ...). Empty: synced.
  std::vector<std::string> pending_kinds() const;

  /// Replaces the objects of resource `index` with a complete list; true when anything changed
  /// that routing reads. A change only to an Ingress's status (kedge's own write coming back)
  /// refreshes the store without asking for a new translation.
  bool apply_list(size_t index, const nlohmann::json& items);
  /// Applies one ADDED/MODIFIED/DELETED event; true as apply_list.
  bool apply_event(size_t index, const WatchEvent& event);

  struct Counters {
    uint64_t lists = 0;         // complete lists applied
    uint64_t watch_events = 0;  // ADDED/MODIFIED/DELETED events applied
    uint64_t changes = 0;       // times the source signalled a change
  };
  Counters counters() const;

 private:
  struct Entry {
    StoredObjectConstPtr good;  // last valid version (null: never valid)
    std::string resource_version;
    Issues issues;  // problems of the current version
  };
  using Entries = std::map<std::pair<std::string, std::string>, Entry>;  // (namespace, name)
  struct KindState {
    Entries entries;
    bool synced = false;
  };

  /// Decodes an API object of resource r into an entry (keeping `previous`'s good version when
  /// the new one is invalid).
  Entry decode(const ApiResource& r, nlohmann::json object, const Entry* previous) const;
  void changed_locked();
  /// Puts an entry's good version in the store (or takes the key out when it has none).
  void store_entry(const ApiResource& r, const std::pair<std::string, std::string>& key,
                   const Entry& entry);
  /// Whether replacing `previous` (null: none) with `next` changes what translation reads.
  static bool routing_change(Kind kind, const Entry* previous, const Entry& next);
  boost::asio::awaitable<void> reflect(size_t index);
  struct Listed {
    nlohmann::json items = nlohmann::json::array();
    std::string resource_version;
  };
  boost::asio::awaitable<Result<Listed>> list_all(const ApiResource& r);

  std::shared_ptr<ApiClient> client_;
  ApiSourceOptions options_;
  std::function<void()> on_change_;
  mutable std::mutex mutex_;
  std::vector<KindState> kinds_;
  ObjectStore store_;     // the good version of every entry, kept as entries change
  uint64_t version_ = 0;  // bumped on every change
  uint64_t cached_version_ = ~uint64_t{0};
  SourceLoad cached_;
  Counters counters_;
};

}  // namespace kedge::k8s
