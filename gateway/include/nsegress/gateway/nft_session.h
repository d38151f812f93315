// The nftables table shared by the providers that keep state in it (table,
// addresses, snat): one model of the table, read in full by observe() and
// advanced by every committed transaction with the kernel's own semantics
// (model.h), so a change costs O(change), not a dump of the table.
#pragma once

#include <optional>
#include <vector>

#include "nsegress/gateway/ports/nft.h"
#include "nsegress/gateway/provider.h"

namespace nsegress::gateway {

class NftSession {
 public:
  explicit NftSession(NftKernel& k) : k_(k) {}
  // Full read of the table into the model (once per reconcile at most).
  Status observe();
  bool hasModel() const { return model_.has_value(); }
  void dropModel() { model_.reset(); }
  const ObservedNft& model() const { return *model_; }
  // One transaction; on success the model advances exactly as the kernel did,
  // on failure the model is dropped (the next reconcile reads the kernel).
  Status apply(const std::vector<NftOp>& ops, ExecStats& stats);

 private:
  NftKernel& k_;
  std::optional<ObservedNft> model_;
};

}  // namespace nsegress::gateway
