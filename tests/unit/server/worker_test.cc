#include "server/worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace kedge::server {
namespace {

using namespace std::chrono_literals;

model::SnapshotConstPtr snapshot_of(uint64_t generation) {
  auto s = std::make_shared<model::Snapshot>();
  s->generation = generation;
  return s;
}

// The loop takes no lock: everything other threads ask of it goes through its mailbox, in the
// order each thread sent it. Several threads publish and read at once (the sanitizer build, which
// CI runs, checks the memory side of it).
TEST(Worker, TasksFromManyThreadsRunOnTheLoopInTheirOrder) {
  proxy::Limits limits;
  proxy::ClientLimiter limiter;
  Worker worker(0, limits, limiter);
  worker.publish(snapshot_of(1));  // before start(): waits in the mailbox
  worker.start();
  EXPECT_EQ(worker.stats().get().snapshot_generation, 1u);

  constexpr int kThreads = 4, kEach = 300;
  std::atomic<int> went_back{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 1; i <= kEach; ++i) {
        // Thread t publishes generations t*10000+i, rising; its own reads never see one of its
        // own go back.
        worker.publish(snapshot_of(static_cast<uint64_t>(t) * 10000 + i));
        if (i % 50 == 0) {
          uint64_t seen = worker.stats().get().snapshot_generation;
          if (seen / 10000 == static_cast<uint64_t>(t) && seen % 10000 < static_cast<uint64_t>(i))
            went_back++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(went_back.load(), 0);
  uint64_t last = worker.stats().get().snapshot_generation;
  EXPECT_EQ(last % 10000, static_cast<uint64_t>(kEach));  // some thread's last one, after all

  worker.drain(0ms);
  worker.join();  // the loop ends: drain stopped it
}

// ~Worker sends the loop its stop through the mailbox: it must return (a hang fails the test at
// ctest's timeout) whether the loop runs or never started.
TEST(Worker, DestroyingARunningOrNeverStartedWorkerReturns) {
  proxy::Limits limits;
  proxy::ClientLimiter limiter;
  {
    Worker never(0, limits, limiter);
    never.publish(snapshot_of(7));
  }
  {
    Worker running(1, limits, limiter);
    running.start();
    EXPECT_EQ(running.stats().get().snapshot_generation, 0u);
  }
}

}  // namespace
}  // namespace kedge::server
