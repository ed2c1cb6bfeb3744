#include "l4/nft_runner.h"

#include "l4/command.h"

#include <string>

#ifdef KEDGE_HAVE_LIBNFTABLES
#include <nftables/libnftables.h>
#endif

namespace kedge::l4 {
namespace {

class CommandRunner final : public NftRunner {
 public:
  Status run(std::string_view script) override {
    auto r = run_command({"nft", "-f", "-"}, script);
    if (!r) return fail(r.error().message);
    if (r->exit_code != 0) return fail("nft: " + r->output);
    return {};
  }
};

#ifdef KEDGE_HAVE_LIBNFTABLES
class LibraryRunner final : public NftRunner {
 public:
  LibraryRunner() : ctx_(nft_ctx_new(NFT_CTX_DEFAULT)) {
    nft_ctx_buffer_output(ctx_);
    nft_ctx_buffer_error(ctx_);
  }
  ~LibraryRunner() override { nft_ctx_free(ctx_); }
  LibraryRunner(const LibraryRunner&) = delete;
  LibraryRunner& operator=(const LibraryRunner&) = delete;

  Status run(std::string_view script) override {
    std::string text(script);  // the library wants a NUL-terminated buffer
    int rc = nft_run_cmd_from_buffer(ctx_, text.c_str());
    std::string error = nft_ctx_get_error_buffer(ctx_);
    nft_ctx_get_output_buffer(ctx_);  // drained for the next call
    if (rc != 0) return fail("nft: " + error);
    return {};
  }

 private:
  nft_ctx* ctx_;
};
#endif

}  // namespace

bool nft_library_available() {
#ifdef KEDGE_HAVE_LIBNFTABLES
  return true;
#else
  return false;
#endif
}

std::unique_ptr<NftRunner> make_nft_runner(NftRunnerKind kind) {
#ifdef KEDGE_HAVE_LIBNFTABLES
  if (kind == NftRunnerKind::Library) return std::make_unique<LibraryRunner>();
#endif
  (void)kind;
  return std::make_unique<CommandRunner>();
}

}  // namespace kedge::l4
