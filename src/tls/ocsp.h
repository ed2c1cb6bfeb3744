#pragma once

#include "common/result.h"
#include "tls/server_context.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kedge::tls {

/// The first OCSP responder URL in the certificate's Authority Information Access, or "".
std::string ocsp_responder_url(X509* cert);

/// Asks the http:// responder at `url` about `cert` (one SHA-1 CertID, no nonce, so responders
/// may answer from their cache), POSTed with OpenSSL's HTTP client within `timeout`. Returns
/// the DER response, not verified yet.
Result<std::string> fetch_ocsp_response(const std::string& url, X509* cert, X509* issuer,
                                        std::chrono::seconds timeout);

/// Accepts a DER response for `cert` only when its status is successful, it is signed by
/// `issuer` or by a responder `issuer` delegated to (OCSP signing key usage), it holds a good or
/// revoked status for this very certificate, and now is within its thisUpdate and nextUpdate
/// (5 minutes of clock skew allowed). Returns the staple, or why the response is refused.
Result<OcspStaple> verify_ocsp_response(std::string_view der, X509* cert, X509* issuer);

/// When to ask again after a good answer: half of the remaining validity, at least a minute
/// (or `max_refresh` when shorter), at most `max_refresh`.
std::chrono::seconds refresh_delay(std::time_t now, std::time_t expires,
                                   std::chrono::seconds max_refresh);
/// When to ask again after the n-th failure in a row: 10 s, doubling up to 10 minutes, and
/// never later than `max_refresh`.
std::chrono::seconds retry_delay(int failures, std::chrono::seconds max_refresh);

struct StaplerOptions {
  std::chrono::seconds max_refresh{3600};  // ask at least this often
  std::chrono::seconds timeout{5};         // per request
  /// How a response is fetched (default: fetch_ocsp_response); tests replace it.
  std::function<Result<std::string>(const std::string& url, X509* cert, X509* issuer)> fetch;
};

/// Keeps an OCSP staple on every certificate whose leaf names an OCSP responder and whose
/// issuer is known: fetches a response, verifies it, stores it in the ServerContext, refreshes
/// it before it expires and retries failures with back-off. A response that fails verification
/// is logged and not stapled; an expired staple is dropped. Certificates without a responder
/// are left alone.
/// Thread: fetches run on the stapler's own thread (they block); update(), counts() and stop()
/// from any thread. Owner: server::run_serve.
class OcspStapler {
 public:
  explicit OcspStapler(StaplerOptions options);
  ~OcspStapler();
  OcspStapler(const OcspStapler&) = delete;
  OcspStapler& operator=(const OcspStapler&) = delete;

  /// The certificates of the newest snapshot. New ones are fetched at once, known ones keep
  /// their schedule, the rest are forgotten.
  void update(std::vector<ServerContextConstPtr> contexts) {
    update([c = std::move(contexts)] { return c; });
  }
  /// The same, with the list made by `collect` on the stapler's thread: walking the certificates
  /// of 10,000 hosts then costs the publishing thread nothing. The newest call wins.
  using Collect = std::function<std::vector<ServerContextConstPtr>()>;
  void update(Collect collect);
  struct Counts {
    size_t staples = 0;     // certificates with a valid staple now
    uint64_t failures = 0;  // failed fetches and refused responses so far
  };
  Counts counts() const;
  /// Waits for a fetch in flight (at most the timeout), then ends the thread.
  void stop();

 private:
  struct Entry {
    ServerContextConstPtr context;
    std::string url;
    bool usable = false;  // false: no issuer, nothing to ask
    std::chrono::steady_clock::time_point due;
    int failures = 0;
  };
  void run();
  void sync(std::vector<ServerContextConstPtr> contexts);
  /// Fetches, verifies and stores one staple; returns when to ask again.
  std::chrono::seconds refresh(Entry& entry);

  StaplerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Collect pending_;
  std::map<const ServerContext*, Entry> entries_;  // written by the stapler's thread only
  std::atomic<uint64_t> failures_{0};
  std::thread thread_;
};

}  // namespace kedge::tls
