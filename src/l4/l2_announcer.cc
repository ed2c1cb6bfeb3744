#include "l4/l2_announcer.h"

#include "l4/command.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace kedge::l4 {
namespace {

class StaticMembership final : public Membership {
 public:
  explicit StaticMembership(std::string node) : node_(std::move(node)) {}
  std::set<std::string> live_nodes() override { return {node_}; }

 private:
  std::string node_;
};

std::array<unsigned char, SHA256_DIGEST_LENGTH> node_hash(std::string_view node,
                                                          std::string_view ip) {
  std::string key = fmt::format("{}#{}", node, ip);
  std::array<unsigned char, SHA256_DIGEST_LENGTH> out{};
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), out.data());
  return out;
}

std::string ipv4_text(const model::SocketAddress& a) {
  return fmt::format("{}.{}.{}.{}", a.ip[0], a.ip[1], a.ip[2], a.ip[3]);
}

}  // namespace

std::shared_ptr<Membership> make_static_membership(std::string node) {
  return std::make_shared<StaticMembership>(std::move(node));
}

std::string choose_owner(std::string_view ip, const std::set<std::string>& candidates) {
  std::string best;
  std::array<unsigned char, SHA256_DIGEST_LENGTH> best_hash{};
  for (const auto& node : candidates) {
    auto h = node_hash(node, ip);
    if (best.empty() || h < best_hash) {
      best = node;
      best_hash = h;
    }
  }
  return best;
}

std::map<std::string, std::optional<std::set<std::string>>> lb_candidates(
    const model::Snapshot& snapshot) {
  std::map<std::string, std::optional<std::set<std::string>>> out;
  for (const auto& l : snapshot.l4_listeners) {
    if (l.role != model::L4Role::LoadBalancer || l.address.v6 || !l.cluster) continue;
    const std::string ip = ipv4_text(l.address);
    auto [it, fresh] = out.try_emplace(ip);
    // The endpoint set of traffic policy Local holds this node's endpoints only, so the other
    // nodes' come from the Service's whole set.
    const bool local = !l.cluster->node.empty();
    if (!local) {
      if (fresh) it->second = std::nullopt;  // any node (a Local listener on the IP narrows it)
      continue;
    }
    const model::Cluster* all = nullptr;
    if (const auto* sp = snapshot.service_ports.find(l.service)) all = sp->get();
    for (const auto& other : snapshot.l4_listeners)
      if (!all && other.service == l.service && other.role == model::L4Role::ClusterIP &&
          other.cluster && other.cluster->node.empty())
        all = other.cluster.get();
    if (!it->second) it->second.emplace();
    for (const auto& e : all ? all->endpoints : l.cluster->endpoints)
      if (!e.node.empty()) it->second->insert(e.node);
  }
  return out;
}

Status send_gratuitous_arp(const std::string& interface, const std::string& ip) {
  in_addr addr{};
  if (inet_pton(AF_INET, ip.c_str(), &addr) != 1) return fail("not an IPv4 address: " + ip);
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) return fail(fmt::format("AF_PACKET socket: {}", std::strerror(errno)));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, interface.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
    int e = errno;
    close(fd);
    return fail(fmt::format("{}: no hardware address: {}", interface, std::strerror(e)));
  }
  std::array<unsigned char, 6> mac{};
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  unsigned index = if_nametoindex(interface.c_str());
  if (index == 0) {
    close(fd);
    return fail(fmt::format("{}: no such interface", interface));
  }
  // ARP request with sender IP = target IP (what `arping -U` sends); the kernel adds the
  // Ethernet header for the broadcast address given below.
  ether_arp arp{};
  arp.arp_hrd = htons(ARPHRD_ETHER);
  arp.arp_pro = htons(ETHERTYPE_IP);
  arp.arp_hln = 6;
  arp.arp_pln = 4;
  arp.arp_op = htons(ARPOP_REQUEST);
  std::memcpy(arp.arp_sha, mac.data(), 6);
  std::memcpy(arp.arp_spa, &addr, 4);
  std::memcpy(arp.arp_tpa, &addr, 4);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = static_cast<int>(index);
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  ssize_t n = sendto(fd, &arp, sizeof arp, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  int e = errno;
  close(fd);
  if (n != static_cast<ssize_t>(sizeof arp))
    return fail(fmt::format("gratuitous ARP on {}: {}", interface, std::strerror(e)));
  return {};
}

L2Announcer::L2Announcer(L2Options options, std::shared_ptr<Membership> membership)
    : options_(std::move(options)), membership_(std::move(membership)) {
  thread_ = std::thread([this] { run(); });
}

L2Announcer::~L2Announcer() { stop(); }

void L2Announcer::apply(model::SnapshotConstPtr snapshot) {
  std::lock_guard lock(mutex_);
  snapshot_ = std::move(snapshot);
  wake_.notify_all();
}

void L2Announcer::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::vector<std::string> ips;
  for (const auto& [ip, due] : owned_) ips.push_back(ip);
  for (const auto& ip : ips) release(ip);
}

void L2Announcer::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    reconcile();
    lock.lock();
    wake_.wait_for(lock, options_.interval);
  }
}

void L2Announcer::reconcile() {
  model::SnapshotConstPtr snapshot;
  {
    std::lock_guard lock(mutex_);
    snapshot = snapshot_;
  }
  std::set<std::string> mine;
  if (snapshot) {
    std::set<std::string> live = membership_->live_nodes();
    for (const auto& [ip, allowed] : lb_candidates(*snapshot)) {
      std::set<std::string> candidates;
      for (const auto& n : live)
        if (!allowed || allowed->contains(n)) candidates.insert(n);
      if (choose_owner(ip, candidates) == options_.node_name) mine.insert(ip);
    }
  }
  std::vector<std::string> lost;
  for (const auto& [ip, due] : owned_)
    if (!mine.contains(ip)) lost.push_back(ip);
  for (const auto& ip : lost) release(ip);
  for (const auto& ip : mine)
    if (!owned_.contains(ip)) claim(ip);
  // Announcements still due (the first one was sent by claim()).
  auto now = Clock::now();
  for (auto& [ip, due] : owned_) {
    while (!due.empty() && due.front() <= now) {
      due.erase(due.begin());
      if (auto r = send_gratuitous_arp(options_.interface, ip); !r)
        spdlog::warn("l2: {}", r.error().message);
    }
  }
}

void L2Announcer::claim(const std::string& ip) {
  auto r = run_command({"ip", "-4", "addr", "replace", ip + "/32", "dev", options_.interface});
  if (!r || r->exit_code != 0) {
    spdlog::error("l2: cannot add {} to {}: {}", ip, options_.interface,
                  r ? r->output : r.error().message);
    return;  // tried again on the next round
  }
  auto now = Clock::now();
  std::vector<Clock::time_point> due;
  for (auto delay : options_.announce) due.push_back(now + delay);
  if (!due.empty()) {
    due.erase(due.begin());
    if (auto g = send_gratuitous_arp(options_.interface, ip); !g)
      spdlog::warn("l2: {}", g.error().message);
  }
  owned_[ip] = std::move(due);
  spdlog::info("l2: {} claimed on {} (node {})", ip, options_.interface, options_.node_name);
}

void L2Announcer::release(const std::string& ip) {
  auto r = run_command({"ip", "-4", "addr", "del", ip + "/32", "dev", options_.interface});
  if (!r || (r->exit_code != 0 && r->output.find("Cannot assign") == std::string::npos))
    spdlog::warn("l2: cannot remove {} from {}: {}", ip, options_.interface,
                 r ? r->output : r.error().message);
  owned_.erase(ip);
  spdlog::info("l2: {} released on {}", ip, options_.interface);
}

}  // namespace kedge::l4
