// sdiff::Follower (include/sdiff/follower.h): the public face of plugin::Follower.
#include <utility>

#include "plugin/follower.h"
#include "plugin/public_options.h"
#include "sdiff/follower.h"

namespace sdiff {

Status Follower::Open(FollowerOptions options, std::unique_ptr<Follower>* out) {
  std::unique_ptr<plugin::Follower> impl;
  Status s = plugin::Follower::Open(plugin::FromPublic(options), &impl);
  if (!s.ok()) return s;
  out->reset(new Follower(std::move(impl)));
  return Status::OK();
}

Follower::Follower(std::unique_ptr<plugin::Follower> impl) : impl_(std::move(impl)) {}

Follower::~Follower() = default;

FollowerStatus Follower::status() const { return plugin::ToPublic(impl_->status()); }

uint16_t Follower::port() const { return impl_->port(); }

void Follower::RequestSync() { impl_->RequestSync(); }

bool Follower::WaitFor(const std::function<bool(const FollowerStatus&)>& pred,
                       std::chrono::milliseconds timeout) const {
  return impl_->WaitFor(
      [&pred](const plugin::FollowerStatus& status) { return pred(plugin::ToPublic(status)); },
      timeout);
}

Status Follower::WaitForSequence(uint64_t seq, std::chrono::milliseconds timeout) const {
  return impl_->WaitForSequence(seq, timeout);
}

rocksdb::DB* Follower::db() { return impl_->db(); }

rocksdb::ColumnFamilyHandle* Follower::column_family(std::string_view name) const {
  return impl_->column_family(name);
}

Status Follower::Audit(AuditResult* result) {
  plugin::AuditResult internal;
  Status s = impl_->Audit(&internal);
  *result = plugin::ToPublic(internal);
  return s;
}

}  // namespace sdiff
