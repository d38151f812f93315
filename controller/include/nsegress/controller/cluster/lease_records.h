// Cluster mode's failover store of record: one coordination.k8s.io Lease per
// address that ever changed owner (common/objects.h EgressLease), in the
// controller's namespace. The leader's lease book (LeaseService) answers the
// gateways' renewals from memory; only a change of owner is written here,
// conditional on the version read (create-if-absent for a first move), so
// etcd arbitrates: of two books (two replicas that both believe they lead)
// one write wins and the other gets 409 → ESTALE → its book stops granting.
// Renewals never reach etcd (a per-address Lease renewed every 100 ms would
// be thousands of writes a second).
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "nsegress/controller/lease_service.h"
#include "nsegress/kube/api.h"

namespace nsegress::controller::cluster {

class KubeLeaseRecords final : public LeaseRecords {
 public:
  KubeLeaseRecords(kube::Api& api, std::string ns) : api_(api), ns_(std::move(ns)) {}
  // Every Lease labelled nsegress.io/egress-lease. One that does not decode
  // is an error naming it (the book refuses to start rather than guess).
  Result<std::map<IpAddress, LeaseView>> load() override;
  Status save(const std::map<IpAddress, LeaseView>& all,
              const std::set<IpAddress>& changed) override;
  std::string describe() const override { return "Leases in namespace " + ns_; }
  static constexpr size_t kParallelWrites = 8;

 private:
  Status write(const IpAddress& ip, const LeaseView& v);
  kube::Api& api_;
  std::string ns_;
  std::mutex mu_;
  std::map<IpAddress, std::string> versions_;  // resourceVersion last read or written
};

}  // namespace nsegress::controller::cluster
