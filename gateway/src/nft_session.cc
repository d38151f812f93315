#include "nsegress/gateway/nft_session.h"

#include <chrono>

#include "nsegress/gateway/model.h"

namespace nsegress::gateway {

Status NftSession::observe() {
  auto o = k_.observe();
  if (!o) {
    model_.reset();
    return o.error();
  }
  model_ = std::move(*o);
  return okStatus();
}

Status NftSession::apply(const std::vector<NftOp>& ops, ExecStats& stats) {
  if (ops.empty()) return okStatus();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = k_.apply(ops);
  stats.nft_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r) {
    model_.reset();
    return r;
  }
  stats.nft_ops += ops.size();
  stats.transactions++;
  // Committed: advance the model exactly as the kernel advanced.
  if (model_) {
    if (auto m = applyCommitted(*model_, ops); !m) {
      model_.reset();
      return m;
    }
  }
  return okStatus();
}

}  // namespace nsegress::gateway
