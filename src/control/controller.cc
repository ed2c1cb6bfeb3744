#include "control/controller.h"

#include <netdb.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kedge::control {

namespace {
constexpr auto kQuiet = std::chrono::milliseconds(5);      // wait for writes to settle
constexpr auto kMaxDelay = std::chrono::milliseconds(60);  // but never longer than this
constexpr auto kRetire = std::chrono::milliseconds(20);    // before freeing the old snapshot
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
  allocations_ =
      std::make_shared<const translate::Allocations>(translate::Allocations::from_json(j));
  spdlog::info("loaded {} Service allocations from {}", allocations_->services.size(), state_dir_);
}

void Controller::save_allocations() {
  if (state_dir_.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(state_dir_, ec);
  fs::path tmp = fs::path(state_dir_) / "allocations.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << allocations_->to_json().dump(2) << "\n";
    if (!out) {
      spdlog::error("cannot write {}", tmp.string());
      return;
    }
  }
  fs::rename(tmp, fs::path(state_dir_) / "allocations.json", ec);
  if (ec) spdlog::error("cannot replace {}/allocations.json: {}", state_dir_, ec.message());
}

void Controller::resolve_external_names(const k8s::ObjectStore* last,
                                        const k8s::ObjectStore& store) {
  // Which Services are ExternalName ones, kept up to date from what changed in the store.
  auto track = [&](const k8s::StoredObject* before, const k8s::StoredObject* after) {
    const k8s::StoredObject* so = before ? before : after;
    if (k8s::kind_of(so->object) != k8s::Kind::Service) return;
    const auto& meta = std::get<k8s::Service>(so->object).meta;
    std::string id = meta.namespace_ + "/" + meta.name;
    external_services_.erase(id);
    if (!after) return;
    const auto& svc = std::get<k8s::Service>(after->object);
    if (svc.type == "ExternalName" && !svc.external_name.empty())
      external_services_.emplace(std::move(id), svc.external_name);
  };
  if (last) {
    k8s::ObjectStore::diff(*last, store, track);
  } else {
    external_services_.clear();
    store.for_each<k8s::Service>(
        [&](const k8s::Service&, const k8s::StoredObject& so) { track(nullptr, &so); });
  }
  std::map<std::string, std::vector<std::string>> resolved;
  for (const auto& [id, name] : external_services_) {
    if (resolved.contains(name)) continue;
    std::vector<std::string>& ips = resolved[name];
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0) continue;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      char buf[NI_MAXHOST];
      if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) ==
          0)
        ips.push_back(buf);
    }
    freeaddrinfo(res);
  }
  options_.external_names = std::move(resolved);
}

size_t Controller::load_now() {
  {
    // What was signalled before this load began is in it: no second load for the same change.
    std::lock_guard lock(mutex_);
    dirty_ = false;
  }
  using Clock = std::chrono::steady_clock;
  auto started = Clock::now();
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  k8s::SourceLoad load = source_.reload();
  double read_ms = ms_since(started);
  auto phase = Clock::now();
  translate::AllocationResult allocated =
      allocated_from_
          ? translate::allocate_after(load.store, *allocated_from_, *allocations_, allocator_)
          : translate::allocate(load.store, *allocations_, allocator_);
  if (allocated.issues.empty())
    allocated_from_ = load.store;
  else
    allocated_from_.reset();
  if (!allocated.unchanged && allocated.allocations != *allocations_) {
    allocations_ = std::make_shared<const translate::Allocations>(std::move(allocated.allocations));
    save_allocations();
  }
  auto previous = slot_.get();  // what the last load published, and resolved names for
  resolve_external_names(previous ? &previous->store : nullptr, load.store);
  double allocate_ms = ms_since(phase);
  phase = Clock::now();
  translate::Translation t =
      translator_.translate(load.store, options_, ++generation_, allocations_);
  double translate_ms = ms_since(phase);
  auto state = std::make_shared<PublishedState>();
  state->issues = std::move(load.issues);
  state->issues.insert(state->issues.end(), allocated.issues.begin(), allocated.issues.end());
  state->issues.insert(state->issues.end(), t.issues.begin(), t.issues.end());
  state->allocations = allocations_;
  issues_total_ += state->issues.size();
  state->reloads = (previous ? previous->reloads : 0) + 1;
  state->issues_total = issues_total_;
  state->store = std::move(load.store);
  state->snapshot = t.snapshot;
  state->published_at = std::chrono::system_clock::now();
  for (const auto& issue : state->issues) spdlog::warn("config: {}", issue.to_string());
  phase = Clock::now();
  publish_(t.snapshot);
  double publish_ms = ms_since(phase);
  size_t n = state->issues.size();
  const translate::Translator::Work work = translator_.last_work();
  spdlog::info(
      "snapshot generation={} files={} objects={} ingresses={} hosts={} issues={} took_ms={:.1f} "
      "(read {:.1f}, allocate {:.1f}, translate {:.1f}: {} Ingresses, {} Services, {} hosts "
      "built again; publish {:.1f})",
      generation_, load.files, state->store.size(), t.snapshot->served_ingresses.size(),
      t.snapshot->exact_hosts.size() + t.snapshot->wildcard_hosts.size(), n, ms_since(started),
      read_ms, allocate_ms, translate_ms, work.ingresses, work.services, work.hosts, publish_ms);
  // The previous snapshot is let go here, on the control thread, once the workers have moved
  // on, so that a worker never pays for freeing it (see run()).
  retired_ = previous ? previous->snapshot : nullptr;
  slot_.set(std::move(state));
  if (on_published_) on_published_();
  return n;
}

void Controller::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (retired_) {
      // Workers take a new snapshot within microseconds; give them a moment, then free the old
      // one here unless a request still holds it.
      cv_.wait_for(lock, kRetire, [&] { return dirty_ || stopping_; });
      retired_.reset();
    }
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
