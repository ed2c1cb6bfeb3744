#include "tls/ocsp.h"
#include "tls/openssl_error.h"

#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace kedge::tls {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, Free>>;

void free_string(char* p) { OPENSSL_free(p); }
void free_stack(STACK_OF(X509) * s) { sk_X509_free(s); }  // the certificates are borrowed

std::time_t asn1_to_time(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return timegm(&tm);
}

constexpr size_t kMaxResponseBytes = 100 * 1024;

}  // namespace

std::string ocsp_responder_url(X509* cert) {
  if (!cert) return {};
  STACK_OF(OPENSSL_STRING)* urls = X509_get1_ocsp(cert);
  std::string out;
  if (urls && sk_OPENSSL_STRING_num(urls) > 0) out = sk_OPENSSL_STRING_value(urls, 0);
  X509_email_free(urls);
  return out;
}

Result<std::string> fetch_ocsp_response(const std::string& url, X509* cert, X509* issuer,
                                        std::chrono::seconds timeout) {
  ERR_clear_error();
  char *host_raw = nullptr, *port_raw = nullptr, *path_raw = nullptr;
  int use_ssl = 0;
  int parsed = OSSL_HTTP_parse_url(url.c_str(), &use_ssl, nullptr, &host_raw, &port_raw, nullptr,
                                   &path_raw, nullptr, nullptr);
  Ptr<char, free_string> host(host_raw), port(port_raw), path(path_raw);
  if (parsed != 1) return fail("not a URL: " + openssl_error());
  if (use_ssl) return fail("https:// responders are not supported");

  Ptr<OCSP_REQUEST, OCSP_REQUEST_free> request(OCSP_REQUEST_new());
  OCSP_CERTID* id = OCSP_cert_to_id(nullptr, cert, issuer);
  if (!request || !id || !OCSP_request_add0_id(request.get(), id)) {
    OCSP_CERTID_free(id);
    return fail("cannot build the request: " + openssl_error());
  }
  Ptr<BIO, BIO_free_all> body(ASN1_item_i2d_mem_bio(
      ASN1_ITEM_rptr(OCSP_REQUEST), reinterpret_cast<const ASN1_VALUE*>(request.get())));
  if (!body) return fail("cannot encode the request: " + openssl_error());
  Ptr<BIO, BIO_free_all> answer(OSSL_HTTP_transfer(
      nullptr, host.get(), port.get(), path.get(), 0, nullptr, nullptr, nullptr, nullptr, nullptr,
      nullptr, 0, nullptr, "application/ocsp-request", body.get(), "application/ocsp-response", 1,
      kMaxResponseBytes, static_cast<int>(timeout.count()), 0));
  if (!answer) return fail(openssl_error());
  std::string der;
  char buf[4096];
  for (int n; (n = BIO_read(answer.get(), buf, sizeof buf)) > 0;) {
    der.append(buf, static_cast<size_t>(n));
    if (der.size() > kMaxResponseBytes) return fail("response too large");
  }
  ERR_clear_error();
  return der;
}

Result<OcspStaple> verify_ocsp_response(std::string_view der, X509* cert, X509* issuer) {
  ERR_clear_error();
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  Ptr<OCSP_RESPONSE, OCSP_RESPONSE_free> response(
      d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (!response || p != reinterpret_cast<const unsigned char*>(der.data() + der.size()))
    return fail("not a DER OCSP response");
  int status = OCSP_response_status(response.get());
  if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL)
    return fail(fmt::format("responder answered {}", OCSP_response_status_str(status)));
  Ptr<OCSP_BASICRESP, OCSP_BASICRESP_free> basic(OCSP_response_get1_basic(response.get()));
  if (!basic) return fail("no basic OCSP response: " + openssl_error());

  // The issuer is the only trust anchor (it may be an intermediate: a partial chain); a
  // responder's own certificate must chain to it and carry the OCSP signing key usage.
  Ptr<X509_STORE, X509_STORE_free> store(X509_STORE_new());
  Ptr<STACK_OF(X509), free_stack> untrusted(sk_X509_new_null());
  if (!store || !untrusted || X509_STORE_add_cert(store.get(), issuer) != 1 ||
      X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN) != 1 ||
      !sk_X509_push(untrusted.get(), issuer))
    return fail("cannot set up verification: " + openssl_error());
  if (OCSP_basic_verify(basic.get(), untrusted.get(), store.get(), OCSP_NOEXPLICIT) != 1)
    return fail("not signed by the issuer or its delegated responder: " + openssl_error());

  Ptr<OCSP_CERTID, OCSP_CERTID_free> id(OCSP_cert_to_id(nullptr, cert, issuer));
  int cert_status = -1, reason = -1;
  ASN1_GENERALIZEDTIME *revoked_at = nullptr, *this_update = nullptr, *next_update = nullptr;
  if (!id || OCSP_resp_find_status(basic.get(), id.get(), &cert_status, &reason, &revoked_at,
                                   &this_update, &next_update) != 1)
    return fail("the response holds no status for this certificate");
  if (OCSP_check_validity(this_update, next_update, 300, -1) != 1)
    return fail("outside its thisUpdate/nextUpdate: " + openssl_error());
  if (cert_status == V_OCSP_CERTSTATUS_UNKNOWN)
    return fail("the responder does not know the certificate");
  ERR_clear_error();
  OcspStaple staple;
  staple.der = std::string(der);
  staple.expires = next_update ? asn1_to_time(next_update) : 0;
  staple.revoked = cert_status == V_OCSP_CERTSTATUS_REVOKED;
  return staple;
}

std::chrono::seconds refresh_delay(std::time_t now, std::time_t expires,
                                   std::chrono::seconds max_refresh) {
  auto min_refresh = std::min(std::chrono::seconds(60), max_refresh);
  return std::clamp(std::chrono::seconds((expires - now) / 2), min_refresh, max_refresh);
}

std::chrono::seconds retry_delay(int failures, std::chrono::seconds max_refresh) {
  auto delay = std::chrono::seconds(10LL << std::clamp(failures - 1, 0, 6));
  return std::min({delay, std::chrono::seconds(600), max_refresh});
}

OcspStapler::OcspStapler(StaplerOptions options) : options_(std::move(options)) {
  if (!options_.fetch)
    options_.fetch = [timeout = options_.timeout](const std::string& url, X509* cert,
                                                  X509* issuer) {
      return fetch_ocsp_response(url, cert, issuer, timeout);
    };
  thread_ = std::thread([this] { run(); });
}

OcspStapler::~OcspStapler() { stop(); }

void OcspStapler::update(Collect collect) {
  {
    std::lock_guard lock(mutex_);
    pending_ = std::move(collect);
  }
  cv_.notify_one();
}

OcspStapler::Counts OcspStapler::counts() const {
  Counts out;
  out.failures = failures_.load();
  std::time_t now = std::time(nullptr);
  std::lock_guard lock(mutex_);
  for (const auto& [_, e] : entries_)
    if (auto staple = e.context->ocsp_staple(); staple && staple->expires > now) ++out.staples;
  return out;
}

void OcspStapler::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void OcspStapler::sync(std::vector<ServerContextConstPtr> contexts) {
  std::map<const ServerContext*, Entry> next;
  for (auto& context : contexts) {
    if (!context || next.contains(context.get())) continue;
    if (auto it = entries_.find(context.get()); it != entries_.end()) {
      next.emplace(context.get(), std::move(it->second));
      continue;
    }
    std::string url = ocsp_responder_url(context->leaf());
    if (url.empty()) continue;
    Entry e{context, url, context->issuer() != nullptr, std::chrono::steady_clock::now(), 0};
    if (!e.usable)
      spdlog::warn(
          "OCSP: {}: the certificate names responder {}, but neither tls.crt's chain nor ca.crt "
          "holds its issuer; not stapled",
          context->source(), url);
    next.emplace(context.get(), std::move(e));
  }
  entries_ = std::move(next);
}

void OcspStapler::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (pending_) {
      Collect collect = std::move(pending_);
      pending_ = nullptr;
      lock.unlock();
      std::vector<ServerContextConstPtr> contexts = collect();
      collect = nullptr;  // lets go of what it holds (a snapshot) before the lock
      lock.lock();
      sync(std::move(contexts));
      continue;  // a newer list, or stop(), may have come meanwhile
    }
    Entry* due = nullptr;
    for (auto& [_, e] : entries_)
      if (e.usable && (!due || e.due < due->due)) due = &e;
    if (!due) {
      cv_.wait(lock);
      continue;
    }
    if (due->due > std::chrono::steady_clock::now()) {
      cv_.wait_until(lock, due->due);
      continue;
    }
    // Only this thread changes entries_, so `due` stays valid while the lock is released.
    lock.unlock();
    auto delay = refresh(*due);
    lock.lock();
    due->due = std::chrono::steady_clock::now() + delay;
  }
}

std::chrono::seconds OcspStapler::refresh(Entry& e) {
  const ServerContext& context = *e.context;
  X509* cert = context.leaf();
  X509* issuer = context.issuer();
  OcspStapleConstPtr old = context.ocsp_staple();
  auto der = options_.fetch(e.url, cert, issuer);
  auto verified = der ? verify_ocsp_response(*der, cert, issuer) : Result<OcspStaple>();
  std::time_t now = std::time(nullptr);
  if (der && verified) {
    auto staple = std::make_shared<OcspStaple>(std::move(*verified));
    // Without a nextUpdate the responder promises nothing: keep it for two refreshes.
    if (staple->expires == 0) staple->expires = now + 2 * options_.max_refresh.count();
    if (!old || old->revoked != staple->revoked)
      spdlog::log(staple->revoked ? spdlog::level::warn : spdlog::level::info,
                  "OCSP: {}: stapling a response from {}: certificate {}", context.source(), e.url,
                  staple->revoked ? "REVOKED" : "good");
    auto delay = refresh_delay(now, staple->expires, options_.max_refresh);
    context.set_ocsp_staple(std::move(staple));
    e.failures = 0;
    return delay;
  }
  ++failures_;
  ++e.failures;
  if (!der)
    spdlog::warn("OCSP: {}: cannot fetch from {}: {}", context.source(), e.url,
                 der.error().message);
  else
    spdlog::warn("OCSP: {}: response from {} refused: {}", context.source(), e.url,
                 verified.error().message);
  if (old && old->expires <= now) {
    spdlog::warn("OCSP: {}: the staple expired; none is sent until a response verifies",
                 context.source());
    context.set_ocsp_staple(nullptr);
  }
  return retry_delay(e.failures, options_.max_refresh);
}

}  // namespace kedge::tls
