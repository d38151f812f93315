// The kernel's semantics for NftOps, as a pure function over ObservedNft. Used
// by the reconciler to keep its model of the kernel current after a committed
// transaction (so a change does not need a full dump), and by the fakes.
#pragma once

#include <optional>

#include "nsegress/gateway/ports/nft.h"

namespace nsegress::gateway {

// Applies one op to `s`; returns the error the kernel would give, if any.
std::optional<Error> applyOp(ObservedNft& s, const NftOp& op);

// All-or-nothing, like one nftables transaction (copies the state first).
Status applyOps(ObservedNft& s, const std::vector<NftOp>& ops);
// In place, for ops the kernel has already committed; on error `s` is partly
// updated and must be discarded.
Status applyCommitted(ObservedNft& s, const std::vector<NftOp>& ops);

}  // namespace nsegress::gateway
