#include "admin/admin_server.h"

#include "http1/parser.h"
#include "proxy/local_reply.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

namespace kedge::admin {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

json snapshot_json(const model::Snapshot& s) {
  auto route_json = [](const model::Route& r) {
    json j = {{"match", r.match == model::MatchType::Exact ? "Exact" : "Prefix"},
              {"path", r.path},
              {"ingress", r.ingress}};
    if (r.cluster) j["cluster"] = r.cluster->name;
    return j;
  };
  auto vhost_json = [&](const model::VirtualHost& vh) {
    json routes = json::array();
    for (const auto& r : vh.routes) routes.push_back(route_json(r));
    return routes;
  };
  json hosts = json::object();
  s.exact_hosts.for_each(
      [&](const std::string& name, const model::VirtualHost& vh) { hosts[name] = vhost_json(vh); });
  s.wildcard_hosts.for_each([&](const std::string& suffix, const model::VirtualHost& vh) {
    hosts["*" + suffix] = vhost_json(vh);
  });
  if (!s.any_host.routes.empty()) hosts["*"] = vhost_json(s.any_host);
  json clusters = json::object();
  for (const auto& c : s.clusters()) {
    json eps = json::array();
    for (const auto& e : c->endpoints)
      eps.push_back({{"address", e.address.to_string()}, {"pod", e.pod}, {"node", e.node}});
    clusters[c->name] = {
        {"endpoints", eps},
        {"lb", c->lb == model::LbPolicy::LeastRequest ? "least_request" : "round_robin"}};
    if (!c->problem.empty()) clusters[c->name]["problem"] = c->problem;
  }
  json ingresses = json::array();
  for (const auto& [id, served] : s.served_ingresses) ingresses.push_back(id);
  json out = {{"generation", s.generation},
              {"hosts", hosts},
              {"clusters", clusters},
              {"ingresses", std::move(ingresses)}};
  if (s.default_backend) out["defaultBackend"] = route_json(*s.default_backend);
  return out;
}

json issues_json(const k8s::Issues& issues) {
  json arr = json::array();
  for (const auto& i : issues) {
    arr.push_back({{"file", i.file},
                   {"line", i.line},
                   {"kind", i.kind},
                   {"namespace", i.namespace_},
                   {"name", i.name},
                   {"field", i.field},
                   {"message", i.message},
                   {"text", i.to_string()}});
  }
  return arr;
}

}  // namespace

AdminResponse handle_admin(const AdminRequest& req, const AdminSources& sources) {
  auto state = sources.state.get();
  if (req.method != "GET" && req.method != "HEAD")
    return {405, "text/plain; charset=utf-8", "method not allowed\n"};
  if (req.path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (req.path == "/readyz") {
    if (std::string why = sources.not_ready ? sources.not_ready() : ""; !why.empty())
      return {503, "text/plain; charset=utf-8", "not ready: " + why + "\n"};
    if (state && state->snapshot) return {200, "text/plain; charset=utf-8", "ok\n"};
    return {503, "text/plain; charset=utf-8", "not ready: no configuration published yet\n"};
  }
  if (req.path == "/metrics") {
    return {200, "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(sources.stats(), state.get()) +
                (sources.extra_metrics ? sources.extra_metrics() : "")};
  }
  if (req.path == "/debug/snapshot") {
    if (!state) return {503, "application/json", "{}\n"};
    return {
        200, "application/json",
        snapshot_json(*state->snapshot).dump(2, ' ', false, json::error_handler_t::replace) + "\n"};
  }
  if (req.path == "/debug/errors") {
    json body = {{"issues", state ? issues_json(state->issues) : json::array()}};
    return {200, "application/json",
            body.dump(2, ' ', false, json::error_handler_t::replace) + "\n"};
  }
  if (auto api = handle_k8s_api(req, state.get(), sources)) return *api;
  return {404, "text/plain; charset=utf-8", "not found\n"};
}

std::string render_metrics(const proxy::Stats& s, const control::PublishedState* state) {
  std::string out;
  auto it = std::back_inserter(out);
  out +=
      "# HELP kedge_requests_total HTTP requests by Ingress, Service and status code.\n"
      "# TYPE kedge_requests_total counter\n";
  for (const auto& [key, rc] : s.requests)
    for (const auto& [status, n] : rc.by_status)
      fmt::format_to(it, "kedge_requests_total{{{},status=\"{}\"}} {}\n", key, status, n);
  for (const auto& [status, n] : s.unrouted)
    fmt::format_to(it, "kedge_requests_total{{ingress=\"\",service=\"\",status=\"{}\"}} {}\n",
                   status, n);
  out +=
      "# HELP kedge_upstream_latency_seconds Time from request start to upstream response head.\n"
      "# TYPE kedge_upstream_latency_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < s.upstream_latency.size(); ++i) {
    cumulative += s.upstream_latency[i];
    if (i < proxy::Stats::kLatencyBounds.size())
      fmt::format_to(it, "kedge_upstream_latency_seconds_bucket{{le=\"{}\"}} {}\n",
                     proxy::Stats::kLatencyBounds[i], cumulative);
    else
      fmt::format_to(it, "kedge_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  }
  fmt::format_to(it, "kedge_upstream_latency_seconds_sum {}\n", s.upstream_latency_sum);
  fmt::format_to(it, "kedge_upstream_latency_seconds_count {}\n", s.upstream_latency_count);
  fmt::format_to(it,
                 "# HELP kedge_active_connections Open downstream connections.\n"
                 "# TYPE kedge_active_connections gauge\nkedge_active_connections {}\n"
                 "# TYPE kedge_accepted_connections_total counter\n"
                 "kedge_accepted_connections_total {}\n"
                 "# TYPE kedge_upstream_connect_failures_total counter\n"
                 "kedge_upstream_connect_failures_total {}\n",
                 s.active_connections, s.accepted_connections, s.upstream_connect_failures);
  fmt::format_to(it,
                 "# HELP kedge_config_reloads_total Snapshots published.\n"
                 "# TYPE kedge_config_reloads_total counter\nkedge_config_reloads_total {}\n"
                 "# HELP kedge_config_errors Issues found in the last configuration load.\n"
                 "# TYPE kedge_config_errors gauge\nkedge_config_errors {}\n"
                 "# TYPE kedge_config_errors_total counter\nkedge_config_errors_total {}\n"
                 "# HELP kedge_snapshot_generation Generation of the newest snapshot.\n"
                 "# TYPE kedge_snapshot_generation gauge\nkedge_snapshot_generation {}\n"
                 "# HELP kedge_worker_snapshot_generation Oldest generation any worker serves.\n"
                 "# TYPE kedge_worker_snapshot_generation gauge\n"
                 "kedge_worker_snapshot_generation {}\n",
                 state ? state->reloads : 0, state ? state->issues.size() : 0,
                 state ? state->issues_total : 0,
                 state && state->snapshot ? state->snapshot->generation : 0, s.snapshot_generation);
  return out;
}

AdminServer::AdminServer(const tcp::endpoint& endpoint, AdminSources sources)
    : acceptor_(ioc_), sources_(std::move(sources)) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
}

AdminServer::~AdminServer() { stop(); }

AdminResponse AdminServer::handle(const AdminRequest& request) {
  return handle_admin(request, sources_);
}

void AdminServer::start() {
  asio::co_spawn(
      ioc_,
      [this]() -> asio::awaitable<void> {
        while (true) {
          auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
          if (ec) {
            if (!acceptor_.is_open()) co_return;
            continue;
          }
          asio::co_spawn(
              ioc_,
              [this, s = std::move(socket)]() mutable -> asio::awaitable<void> {
                http1::Parser parser(http1::Parser::Type::Request, 64 * 1024);
                std::array<char, 8192> buf;
                std::string pending;
                while (true) {
                  auto [rec, n] = co_await s.async_read_some(asio::buffer(buf), use_tuple);
                  if (rec) co_return;
                  pending.append(buf.data(), n);
                  size_t offset = 0;
                  while (true) {
                    auto step = parser.execute(pending.data() + offset, pending.size() - offset);
                    if (step.event == http1::Parser::Event::Error) {
                      std::string bytes = proxy::local_reply(parser.error_status(), true);
                      co_await asio::async_write(s, asio::buffer(bytes), use_tuple);
                      co_return;
                    }
                    offset += step.consumed;
                    if (step.event == http1::Parser::Event::NeedMore) break;
                    parser.resume();
                    if (step.event != http1::Parser::Event::HeadersComplete) continue;
                    const auto& head = parser.head();
                    AdminRequest req;
                    req.method = head.method();
                    std::string_view target = head.target();
                    auto q = target.find('?');
                    req.path = target.substr(0, q);
                    if (q != std::string_view::npos) req.query = target.substr(q + 1);
                    req.accept = head.get("accept");
                    AdminResponse resp = handle(req);
                    bool keep = parser.keep_alive();
                    std::string bytes = fmt::format(
                        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
                        resp.status, proxy::reason_phrase(resp.status), resp.content_type,
                        resp.body.size(), keep ? "" : "Connection: close\r\n");
                    if (req.method != "HEAD") bytes += resp.body;
                    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(bytes), use_tuple);
                    if (wec || !keep) co_return;
                  }
                  pending.erase(0, offset);
                }
              },
              asio::detached);
        }
      },
      asio::detached);
  thread_ = std::thread([this] { ioc_.run(); });
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  asio::post(ioc_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    ioc_.stop();
  });
  thread_.join();
}

}  // namespace kedge::admin
