#include "k8s/kubeconfig.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace kedge::k8s;
namespace fs = std::filesystem;

namespace {

class KubeconfigTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("kedge-kubeconfig-" + std::to_string(::getpid()) + "-" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  fs::path dir_;
};

// "-----BEGIN CERTIFICATE-----\nCA\n" base64-encoded.
constexpr const char* kCaB64 = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCg==";

}  // namespace

TEST_F(KubeconfigTest, CurrentContextWithInlineCaAndToken) {
  auto path = write("config", std::string(R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: other
  cluster: {server: "https://other:1"}
- name: c1
  cluster:
    server: https://api.example.test:6443/
    certificate-authority-data: )") +
                                  kCaB64 + R"(
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: team}
users:
- name: u1
  user: {token: abc123}
)");
  auto c = load_kubeconfig(path);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "api.example.test");
  EXPECT_EQ(c->port, "6443");
  EXPECT_EQ(c->ca_pem, "-----BEGIN CERTIFICATE-----\nCA\n");
  EXPECT_EQ(c->token, "abc123");
  EXPECT_EQ(c->namespace_, "team");
  EXPECT_FALSE(c->insecure);
}

TEST_F(KubeconfigTest, NamedContextFilesRelativeToTheKubeconfig) {
  write("ca.pem", "CA-FILE");
  write("tok", "from-file\n");
  auto path = write("config", R"(current-context: a
clusters:
- name: c
  cluster: {server: "https://[::1]:8443", certificate-authority: ca.pem}
contexts:
- {name: a, context: {cluster: c, user: missing-is-checked}}
- {name: b, context: {cluster: c, user: u}}
users:
- name: u
  user: {tokenFile: tok}
)");
  auto bad = load_kubeconfig(path);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("missing-is-checked"), std::string::npos);
  auto c = load_kubeconfig(path, "b");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, "8443");
  EXPECT_EQ(c->ca_pem, "CA-FILE");
  EXPECT_EQ(c->token_file, (dir_ / "tok").string());
}

TEST_F(KubeconfigTest, RefusesPlainHttpAndMissingPieces) {
  auto path = write("config", R"(current-context: a
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8080"}}]
contexts: [{name: a, context: {cluster: c, user: u}}]
users: [{name: u, user: {client-certificate-data: QUJD}}]
)");
  auto c = load_kubeconfig(path);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("only https://"), std::string::npos);
  EXPECT_FALSE(load_kubeconfig(dir_ / "nope"));
  EXPECT_FALSE(load_kubeconfig(write("bad", "current-context: [")));
}

TEST_F(KubeconfigTest, SkipVerifyExecUsersAndSyntaxErrors) {
  auto path = write("config", R"(current-context: a
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
contexts: [{name: a, context: {cluster: c, user: u}}]
users:
- name: u
  user:
    exec: {command: get-token}
)");
  auto c = load_kubeconfig(path);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("exec and auth-provider"), std::string::npos);
  std::ofstream(path, std::ios::app) << "    token: abc\n";
  c = load_kubeconfig(path);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->insecure);
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->port, "6443");
  auto bad = load_kubeconfig(write("bad", "current-context: a\nclusters:\n  - [\n"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find((dir_ / "bad").string() + ":"), std::string::npos)
      << bad.error().message;
  EXPECT_FALSE(load_kubeconfig(write("list", "- a\n- b\n")));  // not a map
}

TEST_F(KubeconfigTest, InClusterReadsTheServiceAccountFiles) {
  write("token", "tok\n");
  write("ca.crt", "CA");
  write("namespace", "kedge-system\n");
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = in_cluster_config(dir_);
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->host, "10.96.0.1");
  EXPECT_EQ(c->port, "443");
  EXPECT_EQ(c->token_file, (dir_ / "token").string());
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->namespace_, "kedge-system");
  EXPECT_FALSE(in_cluster_config(dir_));  // without the environment
}
