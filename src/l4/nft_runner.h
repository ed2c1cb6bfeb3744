#pragma once

#include "common/result.h"

#include <memory>
#include <string_view>

namespace kedge::l4 {

/// Applies one nft script (several commands) as a single atomic transaction.
/// Thread: one caller at a time. Owner: the nftables data plane.
class NftRunner {
 public:
  virtual ~NftRunner() = default;
  virtual Status run(std::string_view script) = 0;
};

enum class NftRunnerKind {
  Library,  // libnftables in this process (nft_run_cmd_from_buffer): no process start-up
  Command,  // the nft tool: `nft -f -`
};

/// The library runner when kedge was built with libnftables, else the command.
std::unique_ptr<NftRunner> make_nft_runner(NftRunnerKind kind);
bool nft_library_available();

}  // namespace kedge::l4
