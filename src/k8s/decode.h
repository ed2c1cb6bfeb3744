#pragma once

#include "k8s/issue.h"
#include "k8s/objects.h"

#include <map>
#include <optional>
#include <string>

namespace kedge::k8s {

/// Field path ("spec.rules[0].host") → 1-based source line, filled by the YAML reader.
using LineMap = std::map<std::string, int>;

struct DecodeOutcome {
  std::optional<StoredObject> stored;  // set when the object is valid
  bool unknown_kind = false;           // a kind kedge does not handle: ignored, not an error
  std::string api_version, kind, namespace_, name;  // identity, as far as it could be read
};

/// Decodes one Kubernetes object from JSON and validates it as the API server would (required
/// fields, enums, absolute paths for Exact/Prefix, exactly one backend, ...). Every problem is
/// appended to `issues`; an object with any problem is not returned.
/// Thread: any (pure function).
DecodeOutcome decode_object(const nlohmann::json& doc, const Origin& origin, const LineMap* lines,
                            Issues& issues);

}  // namespace kedge::k8s
