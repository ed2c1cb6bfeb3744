#include "common/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>

namespace kedge {
namespace {

TEST(BufferPool, AReturnedBufferIsLentAgainLastInFirstOut) {
  BufferPool pool(4);
  char* first = nullptr;
  char* second = nullptr;
  {
    BufferPool::Lease a = pool.take();
    BufferPool::Lease b = pool.take();
    first = a.data();
    second = b.data();
    EXPECT_NE(first, second);
    EXPECT_EQ(pool.spare(), 0u);
    std::memset(a.data(), 'x', BufferPool::Lease::size());  // the whole size is writable
  }                                                         // b returns, then a: a is on top
  EXPECT_EQ(pool.spare(), 2u);
  BufferPool::Lease c = pool.take();
  EXPECT_EQ(c.data(), first);
  BufferPool::Lease d = pool.take();
  EXPECT_EQ(d.data(), second);
  EXPECT_EQ(pool.spare(), 0u);
}

TEST(BufferPool, KeepsNoMoreThanItWasToldAndFreesTheRest) {
  BufferPool pool(2);
  {
    BufferPool::Lease a = pool.take();
    BufferPool::Lease b = pool.take();
    BufferPool::Lease c = pool.take();
  }
  EXPECT_EQ(pool.spare(), 2u);
  BufferPool none(0);
  { BufferPool::Lease a = none.take(); }
  EXPECT_EQ(none.spare(), 0u);
}

TEST(BufferPool, ALeaseThatOutlivesItsPoolFreesItsBuffer) {
  std::optional<BufferPool::Lease> lease;
  {
    BufferPool pool(4);
    lease.emplace(pool.take());
    std::memset(lease->data(), 'y', BufferPool::Lease::size());
  }
  // The sanitizer build fails here if the lease touches the destroyed pool's shelf.
  lease.reset();
}

TEST(BufferPool, AMovedLeaseReturnsItsBufferOnce) {
  BufferPool pool(4);
  {
    BufferPool::Lease a = pool.take();
    BufferPool::Lease b = std::move(a);
  }
  EXPECT_EQ(pool.spare(), 1u);
}

}  // namespace
}  // namespace kedge
