// The nftables port's contract (tests/contract/nft_contract.h) on the real
// kernel: netlink::NftTable in a fresh lab network namespace per test.
#include <unistd.h>

#include "lab.h"
#include "nft_contract.h"
#include "nsegress/netlink/nft.h"

namespace nsegress::testing {
namespace {

struct KernelBackend {
  static std::unique_ptr<KernelBackend> make() {
    if (geteuid() != 0) return nullptr;
    auto b = std::make_unique<KernelBackend>();
    b->lab = std::make_unique<lab::Lab>("contract");
    b->in = std::make_unique<lab::NetnsEnter>(b->lab->gw());
    auto t = netlink::NftTable::open({"nsegress", lab::Lab::kUplink});
    if (!t) return nullptr;
    b->table = std::move(*t);
    return b;
  }
  static const char* skipReason() { return "needs root: a network namespace with nftables"; }
  gateway::NftKernel& kernel() { return *table; }
  ~KernelBackend() {
    table.reset();
    in.reset();
    lab.reset();
  }
  std::unique_ptr<lab::Lab> lab;
  std::unique_ptr<lab::NetnsEnter> in;
  std::unique_ptr<netlink::NftTable> table;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Kernel, NftContract, KernelBackend);

}  // namespace
}  // namespace nsegress::testing
