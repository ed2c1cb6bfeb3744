#include "control/controller.h"

#include <netdb.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kedge::control {

namespace {
constexpr auto kQuiet = std::chrono::milliseconds(15);     // wait for writes to settle
constexpr auto kMaxDelay = std::chrono::milliseconds(60);  // but never longer than this
}  // namespace

Controller::Controller(k8s::Source& source, translate::Options options,
                       translate::AllocatorConfig allocator, std::string state_dir, StateSlot& slot,
                       Publish publish)
    : source_(source),
      options_(std::move(options)),
      allocator_(std::move(allocator)),
      state_dir_(std::move(state_dir)),
      slot_(slot),
      publish_(std::move(publish)) {
  options_.certificates = &certificates_;
  if (state_dir_.empty()) return;
  std::ifstream in(std::filesystem::path(state_dir_) / "allocations.json");
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) {
    spdlog::error("{}/allocations.json is not valid JSON; starting with no allocations",
                  state_dir_);
    return;
  }
  allocations_ = translate::Allocations::from_json(j);
  spdlog::info("loaded {} Service allocations from {}", allocations_.services.size(), state_dir_);
}

void Controller::save_allocations() {
  if (state_dir_.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(state_dir_, ec);
  fs::path tmp = fs::path(state_dir_) / "allocations.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << allocations_.to_json().dump(2) << "\n";
    if (!out) {
      spdlog::error("cannot write {}", tmp.string());
      return;
    }
  }
  fs::rename(tmp, fs::path(state_dir_) / "allocations.json", ec);
  if (ec) spdlog::error("cannot replace {}/allocations.json: {}", state_dir_, ec.message());
}

void Controller::resolve_external_names(const k8s::ObjectStore& store) {
  std::map<std::string, std::vector<std::string>> resolved;
  store.for_each<k8s::Service>([&](const k8s::Service& svc, const k8s::StoredObject&) {
    if (svc.type != "ExternalName" || svc.external_name.empty() ||
        resolved.contains(svc.external_name))
      return;
    std::vector<std::string>& ips = resolved[svc.external_name];
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(svc.external_name.c_str(), nullptr, &hints, &res) != 0) return;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      char buf[NI_MAXHOST];
      if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) ==
          0)
        ips.push_back(buf);
    }
    freeaddrinfo(res);
  });
  options_.external_names = std::move(resolved);
}

size_t Controller::load_now() {
  auto started = std::chrono::steady_clock::now();
  k8s::SourceLoad load = source_.reload();
  translate::AllocationResult allocated = translate::allocate(load.store, allocations_, allocator_);
  if (allocated.allocations != allocations_) {
    allocations_ = std::move(allocated.allocations);
    save_allocations();
  }
  resolve_external_names(load.store);
  translate::Translation t =
      translate::translate(load.store, options_, ++generation_, &allocations_);
  auto state = std::make_shared<PublishedState>();
  state->issues = std::move(load.issues);
  state->issues.insert(state->issues.end(), allocated.issues.begin(), allocated.issues.end());
  state->issues.insert(state->issues.end(), t.issues.begin(), t.issues.end());
  state->allocations = allocations_;
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
  spdlog::info(
      "snapshot generation={} files={} objects={} ingresses={} clusters={} issues={} "
      "took_ms={:.1f}",
      generation_, load.files, state->store.size(), t.snapshot->served_ingresses.size(),
      t.snapshot->clusters.size(), n, ms.count());
  slot_.set(std::move(state));
  if (on_published_) on_published_();
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
