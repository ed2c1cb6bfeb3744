#include "control/controller.h"

#include <spdlog/spdlog.h>

namespace kedge::control {

namespace {
constexpr auto kQuiet = std::chrono::milliseconds(15);   // wait for writes to settle
constexpr auto kMaxDelay = std::chrono::milliseconds(60);  // but never longer than this
}  // namespace

Controller::Controller(k8s::ManifestSource& source, translate::Options options, StateSlot& slot,
                       Publish publish)
    : source_(source), options_(std::move(options)), slot_(slot), publish_(std::move(publish)) {}

size_t Controller::load_now() {
  auto started = std::chrono::steady_clock::now();
  k8s::ManifestSource::Load load = source_.reload();
  translate::Translation t = translate::translate(load.store, options_, ++generation_);
  auto state = std::make_shared<PublishedState>();
  state->issues = std::move(load.issues);
  state->issues.insert(state->issues.end(), t.issues.begin(), t.issues.end());
  issues_total_ += state->issues.size();
  auto previous = slot_.get();
  state->reloads = (previous ? previous->reloads : 0) + 1;
  state->issues_total = issues_total_;
  state->store = std::move(load.store);
  state->snapshot = t.snapshot;
  state->published_at = std::chrono::system_clock::now();
  for (const auto& issue : state->issues) spdlog::warn("config: {}", issue.to_string());
  publish_(t.snapshot);
  size_t n = state->issues.size();
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started);
  spdlog::info("snapshot generation={} files={} objects={} ingresses={} clusters={} issues={} "
               "took_ms={:.1f}",
               generation_, load.files, state->store.size(), t.snapshot->served_ingresses.size(),
               t.snapshot->clusters.size(), n, ms.count());
  slot_.set(std::move(state));
  return n;
}

void Controller::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] { return dirty_ || stopping_; });
    if (stopping_) return;
    auto first = std::chrono::steady_clock::now();
    // Debounce: keep absorbing events until kQuiet passes without one, up to kMaxDelay.
    while (true) {
      dirty_ = false;
      bool more = cv_.wait_for(lock, kQuiet, [&] { return dirty_ || stopping_; });
      if (stopping_) return;
      if (!more || std::chrono::steady_clock::now() - first > kMaxDelay) break;
    }
    dirty_ = false;
    lock.unlock();
    load_now();
    lock.lock();
  }
}

void Controller::notify() {
  {
    std::lock_guard lock(mutex_);
    dirty_ = true;
  }
  cv_.notify_one();
}

void Controller::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
}

}  // namespace kedge::control
