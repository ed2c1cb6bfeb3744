#include "k8s/watch_stream.h"
#include "k8s/backoff.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace kedge::k8s;

namespace {

std::vector<std::string> feed_all(LineFramer& f, const std::vector<std::string>& chunks) {
  std::vector<std::string> lines;
  for (const auto& c : chunks)
    EXPECT_TRUE(f.feed(c, [&](std::string_view line) { lines.emplace_back(line); }));
  return lines;
}

const std::string kAdded =
    R"({"type":"ADDED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"7"}}})";

}  // namespace

TEST(LineFramer, SeveralEventsInOneChunk) {
  LineFramer f;
  auto lines = feed_all(f, {kAdded + "\n" + kAdded + "\n"});
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], kAdded);
  EXPECT_EQ(f.pending(), 0u);
}

TEST(LineFramer, OneEventAcrossManyChunks) {
  LineFramer f;
  std::vector<std::string> chunks;
  std::string text = kAdded + "\n";
  for (size_t i = 0; i < text.size(); i += 3) chunks.push_back(text.substr(i, 3));
  auto lines = feed_all(f, chunks);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], kAdded);
}

TEST(LineFramer, IncompleteTailIsHeldBackAndCrLfAndBlankLinesAreHandled) {
  LineFramer f;
  auto lines = feed_all(f, {"{\"a\":1}\r\n\n{\"b\"", ":2}"});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "{\"a\":1}");
  EXPECT_EQ(f.pending(), 7u);
  lines = feed_all(f, {"\n"});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "{\"b\":2}");
}

TEST(LineFramer, OverlongLineIsRefused) {
  LineFramer f(16);
  EXPECT_TRUE(f.feed("0123456789", [](std::string_view) {}));
  EXPECT_FALSE(f.feed("0123456789", [](std::string_view) {}));
}

TEST(WatchEvent, DecodesEveryType) {
  for (auto [text, type] :
       std::vector<std::pair<std::string, WatchEventType>>{{"ADDED", WatchEventType::Added},
                                                           {"MODIFIED", WatchEventType::Modified},
                                                           {"DELETED", WatchEventType::Deleted},
                                                           {"BOOKMARK", WatchEventType::Bookmark},
                                                           {"ERROR", WatchEventType::Error}}) {
    auto e = parse_watch_event(R"({"type":")" + text +
                               R"(","object":{"metadata":{"resourceVersion":"12"}}})");
    ASSERT_TRUE(e) << text;
    EXPECT_EQ(e->type, type);
    EXPECT_EQ(resource_version_of(e->object), "12");
  }
}

TEST(WatchEvent, ExpiredErrorCarriesStatus410) {
  auto e = parse_watch_event(
      R"json({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},)json"
      R"json("status":"Failure","message":"too old resource version: 5 (10)",)json"
      R"json("reason":"Expired","code":410}})json");
  ASSERT_TRUE(e);
  ApiStatus st = api_status_of(e->object);
  EXPECT_EQ(st.code, 410);
  EXPECT_EQ(st.reason, "Expired");
  EXPECT_EQ(st.message, "too old resource version: 5 (10)");
}

TEST(WatchEvent, MalformedLinesAreErrors) {
  EXPECT_FALSE(parse_watch_event("{not json"));
  EXPECT_FALSE(parse_watch_event(R"({"object":{}})"));
  EXPECT_FALSE(parse_watch_event(R"({"type":"ADDED"})"));
  EXPECT_FALSE(parse_watch_event(R"({"type":"RENAMED","object":{}})"));
  EXPECT_FALSE(parse_watch_event("[1,2]"));
}

TEST(Backoff, DoublesWithJitterUpToTheCapAndResets) {
  using Millis = Backoff::Millis;
  Backoff b(Millis(100), Millis(1000));
  int64_t expected_base = 100;
  for (int i = 0; i < 8; ++i) {
    Millis d = b.next();
    EXPECT_GE(d.count(), expected_base / 2) << i;
    EXPECT_LE(d.count(), expected_base) << i;
    expected_base = std::min<int64_t>(expected_base * 2, 1000);
  }
  EXPECT_EQ(b.base(), Millis(1000));
  b.reset();
  EXPECT_EQ(b.base(), Millis(100));
}
