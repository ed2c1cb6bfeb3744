#include "k8s/manifest_source.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

namespace kedge::k8s {
namespace {

namespace fs = std::filesystem;

/// A fresh temporary folder per test, removed afterwards.
class ManifestSourceTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("kedge-unit-") + info->name() + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Writes a file and moves its mtime forward, so a rewrite is always seen as a change.
  void write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
    tick_ += std::chrono::seconds(1);
    fs::last_write_time(p, fs::file_time_type::clock::now() + tick_);
  }

  fs::path dir_;
  std::chrono::seconds tick_{0};
};

std::string service(const std::string& name, int port, const std::string& ns = "default") {
  return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\n  namespace: " + ns +
         "\nspec:\n  ports:\n  - port: " + std::to_string(port) + "\n";
}

int port_of(const ObjectStore& store, const std::string& name) {
  const Service* s = store.get<Service>("default", name);
  return s && !s->ports.empty() ? s->ports[0].port : -1;
}

TEST_F(ManifestSourceTest, LoadsFoldersRecursivelyAndSkipsHiddenAndOtherFiles) {
  write("a.yaml", service("a", 80));
  write("sub/b.yml", service("b", 81));
  write(
      "sub/deeper/c.json",
      R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"c"},"spec":{"ports":[{"port":82}]}})");
  write(".hidden.yaml", service("hidden", 1));
  write(".git/d.yaml", service("d", 1));
  write("notes.txt", service("txt", 1));
  ManifestSource source({dir_});
  auto load = source.reload();
  EXPECT_TRUE(load.issues.empty()) << load.issues.size();
  EXPECT_EQ(load.files, 3u);
  EXPECT_EQ(load.store.size(), 3u);
  EXPECT_EQ(port_of(load.store, "a"), 80);
  EXPECT_EQ(port_of(load.store, "b"), 81);
  EXPECT_EQ(port_of(load.store, "c"), 82);
  EXPECT_EQ(port_of(load.store, "hidden"), -1);
  const StoredObject* a = load.store.find(ObjectKey{Kind::Service, "default", "a"});
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->origin.file, (dir_ / "a.yaml").string());
  EXPECT_EQ(a->origin.line, 1);
}

TEST_F(ManifestSourceTest, InvalidObjectKeepsItsLastGoodVersion) {
  write("svc.yaml", service("a", 80) + "---\n" + service("b", 90));
  ManifestSource source({dir_});
  auto first = source.reload();
  ASSERT_TRUE(first.issues.empty());
  EXPECT_EQ(port_of(first.store, "a"), 80);

  // "a" changes and becomes invalid; "b" changes validly.
  write("svc.yaml", service("a", 70000) + "---\n" + service("b", 91));
  auto second = source.reload();
  EXPECT_EQ(port_of(second.store, "a"), 80);  // the last good version
  EXPECT_EQ(port_of(second.store, "b"), 91);
  ASSERT_EQ(second.issues.size(), 1u);
  EXPECT_EQ(second.issues[0].file, (dir_ / "svc.yaml").string());
  EXPECT_EQ(second.issues[0].line, 8);  // "  - port: 70000"
  EXPECT_EQ(second.issues[0].name, "a");
  EXPECT_EQ(second.issues[0].field, "spec.ports[0].port");

  // Still invalid after another unrelated edit: still the last good version, still reported.
  write("svc.yaml", service("a", 0) + "---\n" + service("b", 92));
  auto third = source.reload();
  EXPECT_EQ(port_of(third.store, "a"), 80);
  EXPECT_EQ(port_of(third.store, "b"), 92);
  EXPECT_EQ(third.issues.size(), 1u);

  // Fixed.
  write("svc.yaml", service("a", 81) + "---\n" + service("b", 92));
  auto fourth = source.reload();
  EXPECT_EQ(port_of(fourth.store, "a"), 81);
  EXPECT_TRUE(fourth.issues.empty());

  // Removed from the file: gone.
  write("svc.yaml", service("b", 92));
  auto fifth = source.reload();
  EXPECT_EQ(port_of(fifth.store, "a"), -1);
  EXPECT_EQ(fifth.store.size(), 1u);
}

TEST_F(ManifestSourceTest, NewInvalidObjectIsLeftOut) {
  write("svc.yaml", service("a", 80));
  ManifestSource source({dir_});
  source.reload();
  write("svc.yaml", service("a", 80) + "---\n" + service("new", -1));
  auto load = source.reload();
  EXPECT_EQ(load.store.size(), 1u);
  EXPECT_EQ(load.issues.size(), 1u);
}

TEST_F(ManifestSourceTest, UnparsableFileKeepsEverythingItHad) {
  write("svc.yaml", service("a", 80) + "---\n" + service("b", 90));
  write("other.yaml", service("c", 100));
  ManifestSource source({dir_});
  ASSERT_EQ(source.reload().store.size(), 3u);

  write("svc.yaml", service("a", 81) + "---\n" + "metadata: {name: [unclosed\n");
  auto load = source.reload();
  EXPECT_EQ(load.store.size(), 3u);
  EXPECT_EQ(port_of(load.store, "a"), 80);  // not the 81 of the broken file
  EXPECT_EQ(port_of(load.store, "b"), 90);
  ASSERT_EQ(load.issues.size(), 1u);
  EXPECT_EQ(load.issues[0].file, (dir_ / "svc.yaml").string());
  EXPECT_GT(load.issues[0].line, 0);
  EXPECT_NE(load.issues[0].message.find("YAML syntax error"), std::string::npos);

  // Unchanged files are not parsed again, but their issues are still reported.
  auto again = source.reload();
  EXPECT_EQ(again.store.size(), 3u);
  EXPECT_EQ(again.issues.size(), 1u);
}

TEST_F(ManifestSourceTest, DeletedFileRemovesItsObjects) {
  write("a.yaml", service("a", 80));
  write("b.yaml", service("b", 81));
  ManifestSource source({dir_});
  ASSERT_EQ(source.reload().store.size(), 2u);
  fs::remove(dir_ / "a.yaml");
  auto load = source.reload();
  EXPECT_EQ(load.files, 1u);
  EXPECT_EQ(load.store.size(), 1u);
  EXPECT_EQ(port_of(load.store, "a"), -1);
  EXPECT_EQ(port_of(load.store, "b"), 81);

  // Also when the deleted file was unparsable or had invalid objects kept from before.
  write("b.yaml", "{{{");
  ASSERT_EQ(source.reload().store.size(), 1u);
  fs::remove(dir_ / "b.yaml");
  auto empty = source.reload();
  EXPECT_EQ(empty.store.size(), 0u);
  EXPECT_TRUE(empty.issues.empty());
}

TEST_F(ManifestSourceTest, DuplicatesAcrossFilesAreReported) {
  write("10-first.yaml", service("a", 80));
  write("20-second.yaml", "# comment\n" + service("a", 81) + "---\n" + service("a", 82, "other"));
  ManifestSource source({dir_});
  auto load = source.reload();
  EXPECT_EQ(load.store.size(), 2u);
  EXPECT_EQ(port_of(load.store, "a"), 80);  // the first in file name order
  ASSERT_EQ(load.issues.size(), 1u);
  const Issue& i = load.issues[0];
  EXPECT_EQ(i.file, (dir_ / "20-second.yaml").string());
  EXPECT_EQ(i.line, 2);
  EXPECT_EQ(i.kind, "Service");
  EXPECT_EQ(i.namespace_, "default");
  EXPECT_EQ(i.name, "a");
  EXPECT_NE(i.message.find((dir_ / "10-first.yaml").string()), std::string::npos);
}

// Files are read on several threads but merged in path order: the same store, the same
// definitions chosen and the same issues, in the same order, whatever the thread count.
TEST_F(ManifestSourceTest, ManyThreadsGiveWhatOneGives) {
  for (int f = 0; f < 40; ++f) {
    std::string text;
    for (int s = 0; s < 5; ++s) {
      int n = (f * 5 + s) % 120;  // names repeat across files: duplicates
      text += service("s" + std::to_string(n), 1000 + f) + "---\n";
    }
    if (f % 7 == 3) text += service("bad" + std::to_string(f), 70000);  // an invalid port
    if (f % 11 == 5) text = "key: [unclosed\n";                         // a syntax error
    write(fmt::format("f{:02}.yaml", f), text);
  }
  auto summary = [](const ManifestSource::Load& load) {
    std::string out;
    for (const auto& [key, o] : load.store)
      out += fmt::format("{} {}:{}\n", key.to_string(), o->origin.file, o->origin.line);
    for (const Issue& i : load.issues) out += i.to_string() + "\n";
    return out;
  };
  ManifestSource one({dir_}, 1);
  std::string want = summary(one.reload());
  EXPECT_NE(want.find("Duplicate value"), std::string::npos);
  EXPECT_NE(want.find("YAML syntax error"), std::string::npos);
  EXPECT_NE(want.find("70000"), std::string::npos);
  for (unsigned threads : {2u, 3u, 8u}) {
    ManifestSource many({dir_}, threads);
    EXPECT_EQ(summary(many.reload()), want) << threads << " threads";
  }
}

TEST_F(ManifestSourceTest, TheNextDefinitionTakesOverWhenTheFirstFileGoes) {
  write("10-first.yaml", service("a", 80));
  write("20-second.yaml", service("a", 81));
  ManifestSource source({dir_});
  EXPECT_EQ(source.reload().issues.size(), 1u);
  fs::remove(dir_ / "10-first.yaml");
  auto load = source.reload();
  EXPECT_EQ(port_of(load.store, "a"), 81);
  EXPECT_TRUE(load.issues.empty());
  write("05-zeroth.yaml", service("a", 79));  // an earlier file name wins at once
  load = source.reload();
  EXPECT_EQ(port_of(load.store, "a"), 79);
  ASSERT_EQ(load.issues.size(), 1u);
  EXPECT_EQ(load.issues[0].file, (dir_ / "20-second.yaml").string());
  fs::remove(dir_ / "05-zeroth.yaml");
  fs::remove(dir_ / "20-second.yaml");
  EXPECT_EQ(source.reload().store.size(), 0u);
}

TEST_F(ManifestSourceTest, UnchangedObjectsKeepTheirIdentityWhenTheirFileChanges) {
  write("all.yaml", service("a", 80) + "---\n" + service("b", 80));
  write("other.yaml", service("c", 80));
  ManifestSource source({dir_});
  auto before = source.reload();
  auto identity = [](const ObjectStore& store, const std::string& name) {
    return store.find(ObjectKey{Kind::Service, "default", name});
  };
  write("all.yaml", service("a", 80) + "---\n" + service("b", 81));
  auto after = source.reload();
  EXPECT_EQ(identity(after.store, "a"), identity(before.store, "a"));  // same text, same line
  EXPECT_NE(identity(after.store, "b"), identity(before.store, "b"));
  EXPECT_EQ(port_of(after.store, "b"), 81);
  EXPECT_EQ(identity(after.store, "c"), identity(before.store, "c"));  // file not read again
  EXPECT_EQ(port_of(before.store, "b"), 80);  // what was handed out before does not change
  // Moved down a line: the same object, but its reports would name another line.
  write("all.yaml", "# moved\n" + service("a", 80) + "---\n" + service("b", 81));
  EXPECT_NE(identity(source.reload().store, "a"), identity(after.store, "a"));
}

TEST_F(ManifestSourceTest, MissingFolderIsReported) {
  ManifestSource source({dir_ / "nope"});
  auto load = source.reload();
  EXPECT_EQ(load.store.size(), 0u);
  ASSERT_EQ(load.issues.size(), 1u);
  EXPECT_EQ(load.issues[0].file, (dir_ / "nope").string());
}

TEST_F(ManifestSourceTest, SingleFileRoot) {
  write("one.yaml", service("a", 80));
  write("two.yaml", service("b", 80));
  ManifestSource source({dir_ / "one.yaml"});
  auto load = source.reload();
  EXPECT_EQ(load.store.size(), 1u);
  EXPECT_EQ(port_of(load.store, "a"), 80);
}

}  // namespace
}  // namespace kedge::k8s
