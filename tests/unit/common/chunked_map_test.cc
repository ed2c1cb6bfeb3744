#include "common/chunked_map.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace kedge {
namespace {

struct Value {
  std::string text;
  int n = 0;
  bool operator==(const Value&) const = default;
};
using Map = ChunkedMap<std::string, Value>;
using Reference = std::map<std::string, Value>;

std::string key(int n) { return "ns" + std::to_string(n % 7) + "/k" + std::to_string(n); }

void expect_same(const Map& map, const Reference& ref) {
  ASSERT_EQ(map.size(), ref.size());
  auto it = map.begin();
  for (const auto& [k, v] : ref) {
    ASSERT_NE(it, map.end());
    EXPECT_EQ(it->first, k);
    EXPECT_EQ(it->second, v);
    EXPECT_EQ(map.at(k), v);
    ++it;
  }
  EXPECT_EQ(it, map.end());
}

TEST(ChunkedMap, Empty) {
  Map map;
  EXPECT_TRUE(map.empty());
  EXPECT_EQ(map.begin(), map.end());
  EXPECT_EQ(map.find("a"), map.end());
  EXPECT_FALSE(map.contains("a"));
  EXPECT_THROW(map.at("a"), std::out_of_range);
  EXPECT_FALSE(map.erase("a"));
  EXPECT_EQ(map, Map{});
}

// Writes through operator[] (which may split the chunk it inserts into) keep their reference
// valid, and the map stays equal to std::map through many splits and erases.
TEST(ChunkedMap, MatchesAnOrderedMapThroughSplitsAndErases) {
  std::mt19937 rng(3);
  Map map;
  Reference ref;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 2000; ++i) {
      int n = static_cast<int>(rng() % 4000);
      if (rng() % 4 == 0) {
        EXPECT_EQ(map.erase(key(n)), ref.erase(key(n)) == 1);
      } else {
        Value& v = map[key(n)];
        v.text = "r" + std::to_string(round);
        v.n = i;
        ref[key(n)] = v;
      }
    }
    expect_same(map, ref);
  }
  auto it = map.lower_bound("ns3/");
  EXPECT_EQ(it->first, ref.lower_bound("ns3/")->first);
  EXPECT_EQ(map.lower_bound("zz"), map.end());
  map.clear();
  EXPECT_TRUE(map.empty());
}

TEST(ChunkedMap, CopiesAreIndependentAndCompareByContent) {
  Map a;
  Reference ref_a;
  for (int n = 0; n < 3000; ++n) ref_a[key(n)] = a[key(n)] = {"v", n};
  Map b = a;
  EXPECT_TRUE(b.shares_with(a));
  EXPECT_EQ(a, b);
  b[key(10)].n = -1;
  b.erase(key(20));
  b.insert_or_assign("zz/new", {"new", 1});
  EXPECT_FALSE(b.shares_with(a));
  EXPECT_NE(a, b);
  Reference ref_b = ref_a;
  ref_b[key(10)].n = -1;
  ref_b.erase(key(20));
  ref_b["zz/new"] = {"new", 1};
  expect_same(a, ref_a);
  expect_same(b, ref_b);
  // Equal content built apart (no chunk shared) compares equal.
  Map c;
  for (const auto& [k, v] : ref_b) c[k] = v;
  EXPECT_FALSE(c.shares_with(b));
  EXPECT_EQ(c, b);
  c[key(10)].n = 0;
  EXPECT_NE(c, b);
}

// diff() reports exactly the keys whose values differ, whatever the chunks share.
TEST(ChunkedMap, DiffReportsExactlyTheChanges) {
  std::mt19937 rng(5);
  Map before;
  for (int n = 0; n < 5000; ++n) before[key(n)] = {"v", n};
  using Change = std::pair<std::optional<Value>, std::optional<Value>>;
  for (int changes : {0, 1, 3, 40, 900}) {
    Map after = before;
    std::set<std::string> touched;
    for (int i = 0; i < changes; ++i) {
      int n = static_cast<int>(rng() % 6000);
      touched.insert(key(n));
      if (rng() % 3 == 0)
        after.erase(key(n));
      else if (rng() % 4 == 0 && before.contains(key(n)))
        after[key(n)] = before.at(key(n));  // written, but to the value it had: no change
      else
        after[key(n)] = {"changed", i};
    }
    std::map<std::string, Change> expected;  // the touched keys whose value differs
    for (const auto& k : touched) {
      std::optional<Value> a, b;
      if (before.contains(k)) a = before.at(k);
      if (after.contains(k)) b = after.at(k);
      if (a != b) expected[k] = {a, b};
    }
    std::map<std::string, Change> got;
    Map::diff(before, after, [&](const Map::value_type* a, const Map::value_type* b) {
      Change& c = got[(a ? a : b)->first];
      if (a) c.first = a->second;
      if (b) c.second = b->second;
    });
    EXPECT_EQ(got, expected) << changes << " changes";
  }
}

}  // namespace
}  // namespace kedge
