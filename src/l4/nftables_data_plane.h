#pragma once

#include "common/result.h"
#include "l4/data_plane.h"
#include "l4/nft_runner.h"

#include <memory>

namespace kedge::l4 {

struct NftablesOptions {
  NftRunnerKind runner = NftRunnerKind::Library;
  UserspaceOptions userspace;  // the health check NodePorts are served from userspace
};

/// The kernel data plane (`--dataplane nftables`, needs CAP_NET_ADMIN): Service traffic is
/// DNATed by nftables in table `ip kedge` (see NftRuleset for the layout); kedge only keeps the
/// table current. Created with the empty table loaded (fails when nftables cannot be used);
/// every apply() is one atomic transaction of element changes; stop() removes the table.
Result<std::unique_ptr<DataPlane>> make_nftables_data_plane(const NftablesOptions& options);

}  // namespace kedge::l4
