#include "common/ring.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace kedge {
namespace {

/// A connected pair of stream sockets, closed at the end.
struct Pair {
  Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~Pair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  int fd[2];
};

using Results = std::vector<std::pair<int, int>>;  // tag, result

Results submit(Ring& ring) {
  Results out;
  ring.submit([&](void* tag, int result) {
    out.emplace_back(static_cast<int>(reinterpret_cast<intptr_t>(tag)), result);
  });
  return out;
}

void* tag(intptr_t n) { return reinterpret_cast<void*>(n); }

TEST(Ring, OperationsOfOneBatchEndInsideTheCallInOrder) {
  Ring ring;
  if (!ring.ok()) GTEST_SKIP() << "the kernel refuses io_uring here";
  Pair a, b;
  char got[16] = {};
  char nothing[16];
  ASSERT_TRUE(ring.recv(b.fd[0], nothing, sizeof nothing, tag(1)));  // empty: would block
  ASSERT_TRUE(ring.send(a.fd[1], "hello", 5, tag(2)));
  ASSERT_TRUE(ring.recv(a.fd[0], got, sizeof got, tag(3)));  // after the send, in the same call
  EXPECT_FALSE(ring.empty());
  Results r = submit(ring);
  EXPECT_TRUE(ring.empty());
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], std::pair(1, -EAGAIN));
  EXPECT_EQ(r[1], std::pair(2, 5));
  EXPECT_EQ(r[2], std::pair(3, 5));
  EXPECT_EQ(std::string(got, 5), "hello");
  // Nothing stays in flight: a later batch sees nothing of the earlier one.
  EXPECT_TRUE(submit(ring).empty());
}

TEST(Ring, AFailedOperationDoesNotStopTheOthers) {
  Ring ring;
  if (!ring.ok()) GTEST_SKIP() << "the kernel refuses io_uring here";
  Pair a;
  int closed = ::dup(a.fd[0]);
  ::close(closed);
  ASSERT_TRUE(ring.send(closed, "x", 1, tag(1)));
  ASSERT_TRUE(ring.send(a.fd[1], "y", 1, tag(2)));
  Results r = submit(ring);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0], std::pair(1, -EBADF));
  EXPECT_EQ(r[1], std::pair(2, 1));
}

TEST(Ring, AFullSocketTakesPartOrNothingWithoutWaiting) {
  Ring ring;
  if (!ring.ok()) GTEST_SKIP() << "the kernel refuses io_uring here";
  Pair a;
  std::string big(8 << 20, 'z');
  ASSERT_TRUE(ring.send(a.fd[1], big.data(), big.size(), tag(1)));
  ASSERT_TRUE(ring.send(a.fd[1], big.data(), big.size(), tag(2)));
  Results r = submit(ring);  // returns although nobody reads: nothing waits
  ASSERT_EQ(r.size(), 2u);
  EXPECT_GT(r[0].second, 0);
  EXPECT_LT(r[0].second, static_cast<int>(big.size()));
  EXPECT_EQ(r[1].second, -EAGAIN);
}

TEST(Ring, FullRingAndDisabledRingRefuse) {
  Ring off(false);
  EXPECT_FALSE(off.ok());
  EXPECT_FALSE(off.send(0, "x", 1, nullptr));
  Ring ring;
  if (!ring.ok()) GTEST_SKIP() << "the kernel refuses io_uring here";
  Pair a;
  char buf[1];
  for (unsigned i = 0; i < Ring::kEntries; ++i)
    ASSERT_TRUE(ring.recv(a.fd[0], buf, 1, tag(static_cast<intptr_t>(i))));
  EXPECT_FALSE(ring.recv(a.fd[0], buf, 1, tag(-1))) << "queued past the ring's size";
  Results r = submit(ring);
  EXPECT_EQ(r.size(), Ring::kEntries);
}

}  // namespace
}  // namespace kedge
