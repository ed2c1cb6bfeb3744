#include "server/kube_runtime.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdlib>
#include <random>

namespace kedge::server {

namespace asio = boost::asio;

SourceMode source_mode(const ServeOptions& options) {
  if (!options.manifests.empty()) return SourceMode::Manifests;
  if (!options.kubeconfig.empty()) return SourceMode::Kubeconfig;
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  if (host && *host) return SourceMode::InCluster;
  return SourceMode::None;
}

namespace {

std::string default_identity() {
  std::string base;
  if (const char* pod = std::getenv("POD_NAME"); pod && *pod) {
    base = pod;
  } else {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    base = host;
  }
  std::random_device rd;
  return fmt::format("{}_{:08x}", base, rd());
}

control::Millis seconds(double s) { return control::Millis(static_cast<int64_t>(s * 1000)); }

}  // namespace

Result<std::unique_ptr<KubeRuntime>> KubeRuntime::create(const ServeOptions& options,
                                                         SourceMode mode) {
  auto config = mode == SourceMode::Kubeconfig
                    ? k8s::load_kubeconfig(options.kubeconfig, options.kube_context)
                    : k8s::in_cluster_config();
  if (!config) return fail(config.error().message);
  std::string account_namespace = config->namespace_;
  std::string source = config->source;
  auto client = k8s::ApiClient::create(std::move(*config));
  if (!client) return fail(client.error().message);
  if (options.lease_duration_s <= options.renew_deadline_s ||
      options.renew_deadline_s <= options.retry_period_s || options.retry_period_s <= 0)
    return fail("leader election needs lease duration > renew deadline > retry period > 0");

  std::unique_ptr<KubeRuntime> rt(new KubeRuntime());
  rt->options_ = options;
  rt->client_ = std::move(*client);
  k8s::ApiSourceOptions so;
  so.namespace_ = options.namespace_;
  so.backoff_max = seconds(options.api_retry_max_s);
  so.page_size = options.api_list_limit;
  KubeRuntime* self = rt.get();
  rt->source_ = std::make_unique<k8s::ApiSource>(rt->client_, so, [self] {
    if (auto* c = self->controller_.load()) c->notify();
  });
  control::StatusWriterOptions wo;
  wo.publish_service = options.publish_service;
  if (!options.publish_status_address.empty()) {
    std::string list = options.publish_status_address;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = list.find(',', start);
      std::string one = list.substr(start, comma == std::string::npos ? comma : comma - start);
      if (!one.empty()) wo.publish_addresses.push_back(one);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  wo.default_lb_class = options.allocator.default_lb_class;
  // Without address pools kedge is no LoadBalancer provider and leaves Services' status alone.
  wo.service_status = !options.lb_pools.empty();
  control::LeaderElectionConfig le;
  le.namespace_ = !options.election_namespace.empty() ? options.election_namespace
                  : !account_namespace.empty()        ? account_namespace
                                                      : "default";
  le.name = options.election_id;
  le.identity = options.election_identity.empty() ? default_identity() : options.election_identity;
  le.lease_duration = seconds(options.lease_duration_s);
  le.renew_deadline = seconds(options.renew_deadline_s);
  le.retry_period = seconds(options.retry_period_s);
  wo.identity = le.identity;
  rt->writer_options_ = std::move(wo);
  spdlog::info("kubernetes API source: {}; namespace {}; leader election {} as {} (lease {}/{})",
               source, options.namespace_.empty() ? "all" : options.namespace_,
               options.leader_elect ? "on" : "off", le.identity, le.namespace_, le.name);
  if (options.leader_elect)
    rt->elector_ = std::make_unique<control::LeaderElector>(
        rt->client_, le, [self](bool leading) { self->writer_->set_leading(leading); });
  return rt;
}

KubeRuntime::~KubeRuntime() { shutdown(); }

std::function<std::string()> KubeRuntime::readiness() {
  return [this] {
    auto pending = source_->pending_kinds();
    if (pending.empty()) return std::string();
    return fmt::format("waiting for the first list of {} from the API server",
                       fmt::join(pending, ", "));
  };
}

void KubeRuntime::start(control::Controller& controller, control::StateSlot& slot) {
  writer_ = std::make_unique<control::StatusWriter>(client_, slot, writer_options_);
  controller.on_published([this] { writer_->poke(); });
  controller_.store(&controller);
  source_->start(ioc_);
  writer_->start(ioc_);
  if (elector_)
    elector_->start(ioc_);
  else
    writer_->set_leading(true);  // the only replica: it writes status
  thread_ = std::thread([this] { ioc_.run(); });
}

int KubeRuntime::wait_synced(const sigset_t& signals) {
  timespec tick{0, 100'000'000};
  bool logged = false;
  for (auto started = std::chrono::steady_clock::now(); !source_->pending_kinds().empty();) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig > 0) return sig;
    if (!logged && std::chrono::steady_clock::now() - started > std::chrono::seconds(10)) {
      spdlog::warn("still waiting for the first list of {} from the API server",
                   fmt::join(source_->pending_kinds(), ", "));
      logged = true;
    }
  }
  return 0;
}

void KubeRuntime::shutdown() {
  if (!thread_.joinable()) return;
  controller_.store(nullptr);
  if (elector_) {
    auto done = asio::co_spawn(ioc_, elector_->release(), asio::use_future);
    if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
      spdlog::warn("leader election: the lease was not released in time");
  }
  guard_.reset();
  ioc_.stop();
  thread_.join();
}

}  // namespace kedge::server
