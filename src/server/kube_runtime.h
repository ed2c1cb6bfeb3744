#pragma once

#include "common/result.h"
#include "control/controller.h"
#include "control/leader_elector.h"
#include "control/status_writer.h"
#include "k8s/api_source.h"
#include "server/options.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <csignal>
#include <memory>
#include <thread>

namespace kedge::server {

/// Where `kedge serve` reads objects from, by precedence: --manifests; else --kubeconfig; else
/// the in-cluster service account when KUBERNETES_SERVICE_HOST is set.
enum class SourceMode { Manifests, Kubeconfig, InCluster, None };
SourceMode source_mode(const ServeOptions& options);

/// The cluster side of `kedge serve`: the API client and source, leader election and the status
/// writer, all on one "kube" thread with its own io_context.
/// Thread: created, started and shut down by run_serve on the main thread.
class KubeRuntime {
 public:
  static Result<std::unique_ptr<KubeRuntime>> create(const ServeOptions& options, SourceMode mode);
  ~KubeRuntime();

  k8s::Source& source() { return *source_; }
  /// For /readyz: the kinds still waiting for their first list, or "".
  std::function<std::string()> readiness();
  /// Connects the source to the controller and starts the kube thread.
  void start(control::Controller& controller, control::StateSlot& slot);
  /// Waits until every kind has been listed once; returns 0, or the signal that came first.
  int wait_synced(const sigset_t& signals);
  /// Releases the lease when leading, then stops the kube thread.
  void shutdown();

 private:
  KubeRuntime() = default;

  boost::asio::io_context ioc_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      ioc_.get_executor()};
  std::thread thread_;
  ServeOptions options_;
  std::shared_ptr<k8s::ApiClient> client_;
  std::unique_ptr<k8s::ApiSource> source_;
  control::StatusWriterOptions writer_options_;
  std::unique_ptr<control::LeaderElector> elector_;
  std::unique_ptr<control::StatusWriter> writer_;
  std::atomic<control::Controller*> controller_{nullptr};
};

}  // namespace kedge::server
