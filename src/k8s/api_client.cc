#include "k8s/api_client.h"

#include "tls/openssl_error.h"

#include <fmt/format.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <array>

namespace kedge::k8s {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t start = 0;
  while (start < s.size() && std::isspace(static_cast<unsigned char>(s[start]))) ++start;
  return s.substr(start);
}

/// Adds every certificate of a PEM bundle to the context's trust store.
Result<void> add_cas(ssl::context& ctx, const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.native_handle());
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();
  if (added == 0) return fail("the CA bundle holds no PEM certificate");
  return {};
}

}  // namespace

ApiClient::ApiClient(ClusterConfig config) : config_(std::move(config)) {}

Result<std::shared_ptr<ApiClient>> ApiClient::create(ClusterConfig config) {
  std::shared_ptr<ApiClient> client(new ApiClient(std::move(config)));
  const ClusterConfig& c = client->config_;
  client->ssl_ = std::make_unique<ssl::context>(ssl::context::tls_client);
  ssl::context& ctx = *client->ssl_;
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (c.insecure) {
    ctx.set_verify_mode(ssl::verify_none);
  } else {
    ctx.set_verify_mode(ssl::verify_peer);
    if (c.ca_pem.empty()) {
      boost::system::error_code ec;
      ctx.set_default_verify_paths(ec);
    } else if (auto ok = add_cas(ctx, c.ca_pem); !ok) {
      return fail(fmt::format("{}: {}", c.source, ok.error().message));
    }
  }
  if (!c.client_cert_pem.empty()) {
    boost::system::error_code ec;
    ctx.use_certificate_chain(asio::buffer(c.client_cert_pem), ec);
    if (!ec) ctx.use_private_key(asio::buffer(c.client_key_pem), ssl::context::pem, ec);
    if (ec) return fail(fmt::format("{}: client certificate: {}", c.source, ec.message()));
  }
  if (!c.token_file.empty() && client->bearer().empty())
    return fail(fmt::format("{}: token file {} holds no token", c.source, c.token_file));
  return client;
}

std::string ApiClient::bearer() {
  if (!config_.token_file.empty()) {
    // Re-read each time: a projected service-account token is replaced well before it expires.
    if (auto t = read_file(config_.token_file); t) {
      std::string fresh = trimmed(*t);
      if (!fresh.empty()) token_ = std::move(fresh);
    }
    return token_;
  }
  return config_.token;
}

namespace {

/// Resolves, connects and completes the TLS handshake, checking the server's name.
asio::awaitable<Result<std::unique_ptr<TlsStream>>> open_stream(const ClusterConfig& c,
                                                                ssl::context& ctx,
                                                                std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  tcp::resolver resolver(ex);
  auto [rec, endpoints] = co_await resolver.async_resolve(c.host, c.port, use_tuple);
  if (rec) co_return fail(fmt::format("cannot resolve {}:{}: {}", c.host, c.port, rec.message()));
  auto s = std::make_unique<TlsStream>(ex, ctx);
  const std::string& name = c.tls_server_name.empty() ? c.host : c.tls_server_name;
  if (!is_ip_literal(name)) SSL_set_tlsext_host_name(s->native_handle(), name.c_str());
  if (!c.insecure) s->set_verify_callback(ssl::host_name_verification(name));
  beast::get_lowest_layer(*s).expires_after(timeout);
  auto [cec, ep] = co_await beast::get_lowest_layer(*s).async_connect(endpoints, use_tuple);
  if (cec)
    co_return fail(fmt::format("cannot connect to {}:{}: {}", c.host, c.port, cec.message()));
  auto [hec] = co_await s->async_handshake(ssl::stream_base::client, use_tuple);
  if (hec) {
    std::string detail = hec.message();
    if (hec.category() == asio::error::get_ssl_category())
      detail += " (" + tls::openssl_error() + ")";
    co_return fail(fmt::format("TLS handshake with {}:{}: {}", c.host, c.port, detail));
  }
  co_return s;
}

http::request<http::string_body> make_request(const ClusterConfig& c, const std::string& method,
                                              const std::string& target, const std::string& token) {
  http::request<http::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, c.port == "443" ? c.host : c.host + ":" + c.port);
  req.set(http::field::user_agent, "kedge/0.1");
  req.set(http::field::accept, "application/json");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  return req;
}

}  // namespace

asio::awaitable<Result<ApiResponse>> ApiClient::request(std::string method, std::string target,
                                                        std::string body, std::string content_type,
                                                        Millis timeout) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto s = co_await open_stream(config_, *ssl_, timeout);
    if (!s) co_return fail(s.error().message);
    auto req = make_request(config_, method, target, bearer());
    if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      req.set(http::field::content_type, content_type);
      req.body() = body;
      req.prepare_payload();
    }
    beast::get_lowest_layer(**s).expires_after(timeout);
    auto [wec, wn] = co_await http::async_write(**s, req, use_tuple);
    if (wec) co_return fail(fmt::format("{} {}: {}", method, target, wec.message()));
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{512} << 20);
    auto [rec, rn] = co_await http::async_read(**s, buffer, parser, use_tuple);
    if (rec) co_return fail(fmt::format("{} {}: {}", method, target, rec.message()));
    ApiResponse out{static_cast<int>(parser.get().result_int()), std::move(parser.get().body())};
    beast::get_lowest_layer(**s).socket().close();
    // A 401 with a token file: the token may have just rotated; read it again and retry once.
    if (out.status == 401 && attempt == 0 && !config_.token_file.empty()) continue;
    co_return out;
  }
  co_return fail("unreachable");
}

asio::awaitable<Result<int>> ApiClient::stream(std::string target,
                                               std::function<bool(std::string_view)> on_data,
                                               Millis idle_timeout, std::string* error_body) {
  auto s = co_await open_stream(config_, *ssl_, std::min(idle_timeout, Millis(30000)));
  if (!s) co_return fail(s.error().message);
  auto req = make_request(config_, "GET", target, bearer());
  beast::get_lowest_layer(**s).expires_after(Millis(30000));
  auto [wec, wn] = co_await http::async_write(**s, req, use_tuple);
  if (wec) co_return fail(fmt::format("GET {}: {}", target, wec.message()));
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  beast::get_lowest_layer(**s).expires_after(idle_timeout);
  auto [hec, hn] = co_await http::async_read_header(**s, buffer, parser, use_tuple);
  if (hec) co_return fail(fmt::format("GET {}: {}", target, hec.message()));
  int status = static_cast<int>(parser.get().result_int());
  std::array<char, 16384> chunk;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::get_lowest_layer(**s).expires_after(idle_timeout);
    auto [ec, n] = co_await http::async_read_some(**s, buffer, parser, use_tuple);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return fail(fmt::format("watch {} broke: {}", target, ec.message()));
    std::string_view got(chunk.data(), chunk.size() - parser.get().body().size);
    if (status != 200) {
      if (error_body && error_body->size() < 65536) error_body->append(got);
      continue;
    }
    if (!got.empty() && !on_data(got)) break;
  }
  beast::get_lowest_layer(**s).socket().close();
  co_return status;
}

}  // namespace kedge::k8s
