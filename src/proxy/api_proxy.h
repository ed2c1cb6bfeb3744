#pragma once

#include "model/snapshot.h"

#include <string>
#include <string_view>

namespace kedge::proxy {

/// Where a `kubectl proxy`-style request goes:
/// /api/v1/namespaces/NS/services/[http:]NAME[:PORT]/proxy/PATH → PATH on an endpoint of the
/// Service port, as the Kubernetes API server's service proxy does.
struct ApiProxyTarget {
  int status = 0;        // non-zero: answer with this status (404, 400, 301)
  std::string location;  // for 301: the same path with "/proxy/"
  model::ClusterConstPtr cluster;
  std::string upstream_target;  // "/PATH?query"
};

ApiProxyTarget resolve_api_proxy(const model::Snapshot& snapshot, std::string_view target);

/// Whether an Authorization header carries `Bearer <token>`; compares in constant time.
bool api_proxy_authorized(std::string_view authorization, std::string_view token);

}  // namespace kedge::proxy
