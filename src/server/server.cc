#include "admin/admin_server.h"
#include "control/controller.h"
#include "k8s/dir_watcher.h"
#include "server/options.h"
#include "server/worker.h"

#include <csignal>
#include <spdlog/spdlog.h>

#include <iostream>

namespace kedge::server {

namespace asio = boost::asio;

bool split_host_port(const std::string& text, std::string& host, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  std::string p = text.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  int value = std::stoi(p);
  if (value > 65535) return false;
  port = static_cast<uint16_t>(value);
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

int run_check(const std::vector<std::string>& manifests, const translate::Options& options) {
  std::vector<std::filesystem::path> roots(manifests.begin(), manifests.end());
  k8s::ManifestSource source(roots);
  auto load = source.reload();
  auto t = translate::translate(load.store, options, 1);
  size_t n = 0;
  for (const auto* list : {&load.issues, &t.issues})
    for (const auto& issue : *list) {
      std::cout << issue.to_string() << "\n";
      ++n;
    }
  std::cout << load.files << " files, " << load.store.size() << " objects, "
            << t.snapshot->served_ingresses.size() << " Ingresses served, " << n << " problems\n";
  return n == 0 ? 0 : 1;
}

int run_serve(const ServeOptions& options) {
  std::string http_host, admin_host;
  uint16_t http_port = 0, admin_port = 0;
  if (!split_host_port(options.http_listen, http_host, http_port)) {
    spdlog::error("--http-listen: expected ADDR:PORT, got \"{}\"", options.http_listen);
    return 2;
  }
  if (!split_host_port(options.admin_listen, admin_host, admin_port)) {
    spdlog::error("--admin-listen: expected ADDR:PORT, got \"{}\"", options.admin_listen);
    return 2;
  }
  if (options.manifests.empty()) {
    spdlog::error("no configuration source: pass --manifests DIR");
    return 2;
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  int n_workers = options.workers > 0 ? options.workers
                                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<Worker>> workers;
  auto http_endpoint = asio::ip::tcp::endpoint(asio::ip::make_address(http_host), http_port);
  try {
    for (int i = 0; i < n_workers; ++i) {
      auto w = std::make_unique<Worker>(i, options.limits);
      uint16_t bound = w->listen(http_endpoint, proxy::ListenerInfo{"http", http_port});
      http_endpoint.port(bound);  // with port 0, every worker shares the first one's port
      workers.push_back(std::move(w));
    }
  } catch (const boost::system::system_error& e) {
    spdlog::error("cannot listen on {}: {}", options.http_listen, e.code().message());
    return 1;
  }

  control::StateSlot slot;
  std::string publish = options.publish_status_address;
  if (publish.empty())
    publish = http_endpoint.address().is_unspecified() ? "127.0.0.1" : http_host;
  admin::AdminSources sources{slot,
                              [&workers] {
                                proxy::Stats total;
                                for (auto& w : workers) total.merge(w->stats().get());
                                return total;
                              },
                              publish, ""};
  std::unique_ptr<admin::AdminServer> admin;
  try {
    auto ep = asio::ip::tcp::endpoint(asio::ip::make_address(admin_host), admin_port);
    sources.server_address = options.admin_listen;
    admin = std::make_unique<admin::AdminServer>(ep, sources);
  } catch (const boost::system::system_error& e) {
    spdlog::error("cannot listen on {}: {}", options.admin_listen, e.code().message());
    return 1;
  }

  std::vector<std::filesystem::path> roots(options.manifests.begin(), options.manifests.end());
  k8s::ManifestSource source(roots);
  control::Controller controller(source, options.translate, slot,
                                 [&workers](model::SnapshotConstPtr snapshot) {
                                   for (auto& w : workers) w->publish(snapshot);
                                 });
  controller.load_now();
  for (auto& w : workers) w->start();
  admin->start();
  spdlog::info("kedge serving http on {}:{} with {} workers; admin on {}:{}", http_host,
               http_endpoint.port(), n_workers, admin_host, admin->port());

  k8s::DirWatcher watcher(roots, [&controller] { controller.notify(); });
  std::thread control_thread([&controller] { controller.run(); });

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: draining (grace {} ms)", sig, options.shutdown_grace_ms);
  controller.stop();
  control_thread.join();
  for (auto& w : workers) w->drain(std::chrono::milliseconds(options.shutdown_grace_ms));
  for (auto& w : workers) w->join();
  admin->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace kedge::server
