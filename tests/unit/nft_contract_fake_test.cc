// The nftables port's contract (tests/contract/nft_contract.h) on the fake.
#include "fake_nft.h"
#include "nft_contract.h"

namespace nsegress::testing {
namespace {

struct FakeBackend {
  static std::unique_ptr<FakeBackend> make() { return std::make_unique<FakeBackend>(); }
  static const char* skipReason() { return ""; }
  gateway::NftKernel& kernel() { return nft; }
  FakeNft nft;
};

INSTANTIATE_TYPED_TEST_SUITE_P(Fake, NftContract, FakeBackend);

}  // namespace
}  // namespace nsegress::testing
