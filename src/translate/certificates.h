#pragma once

#include "k8s/issue.h"
#include "k8s/object_store.h"
#include "tls/server_context.h"

#include <map>
#include <string>

namespace kedge::translate {

/// Remembers the certificate built from each `kubernetes.io/tls` Secret, so an unchanged Secret
/// is not parsed again, and a Secret that turns bad keeps serving its last good certificate.
/// Thread: the control thread only. Owner: control::Controller (passed in translate::Options).
class CertificateCache {
 public:
  struct Lookup {
    tls::ServerContextConstPtr context;  // null: nothing usable
    std::string error;                   // why the current data is refused, if it is
  };
  /// The certificate of Secret `ns/name`, built (or reused) from its current data.
  Lookup get(const k8s::Secret& secret);
  /// Drops entries of Secrets that no longer exist.
  void retain(const k8s::ObjectStore& store);

 private:
  struct Entry {
    std::string cert, key, ca;  // the data the entry was built from (ca.crt: OCSP's issuer)
    std::string error;
    tls::ServerContextConstPtr last_good;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace kedge::translate
