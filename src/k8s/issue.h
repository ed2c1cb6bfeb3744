#pragma once

#include <string>
#include <vector>

namespace kedge::k8s {

/// One problem found in configuration input: where it is (file, line), which object, which
/// field, and why. Issues never abort a load: the object is skipped (its last good version keeps
/// serving) and the issue is logged and shown on the admin API.
struct Issue {
  std::string file;  // manifest path or "api"; empty when not from a file
  int line = 0;      // 1-based; 0 when unknown
  std::string kind;
  std::string namespace_;
  std::string name;
  std::string field;  // e.g. spec.rules[0].http.paths[1].pathType
  std::string message;

  /// "file:line: Kind ns/name: field: message", omitting the parts that are unknown.
  std::string to_string() const;
};

using Issues = std::vector<Issue>;

}  // namespace kedge::k8s
