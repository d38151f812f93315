// Provider `table`: the structure of the nftables table (table, sets,
// chains, rules). Creates it on a cold start; rebuilds a table whose
// structure is not what this version builds (another version, another
// uplink, tampering) in one transaction that carries over everything the old
// table held, so enforcement is continuous across the rebuild.
#pragma once

#include "nsegress/gateway/nft_session.h"

namespace nsegress::gateway {

// Pure: the ops that give the table this version's structure.
std::vector<NftOp> planTable(const ObservedNft& have);

class TableProvider final : public Provider {
 public:
  explicit TableProvider(NftSession& s) : s_(s) {}
  std::string_view name() const override { return "table"; }
  Status observe() override;
  bool hasModel() const override { return s_.hasModel(); }
  void dropModel() override { s_.dropModel(); }
  Status install(const DesiredState& desired, ExecStats& stats) override;
  Status retire(const DesiredState&, ExecStats&) override { return okStatus(); }

 private:
  NftSession& s_;
};

}  // namespace nsegress::gateway
