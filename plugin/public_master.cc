// sdiff::Master (include/sdiff/master.h): the public face of plugin::Master.
#include <utility>

#include "plugin/master.h"
#include "plugin/public_options.h"
#include "sdiff/master.h"

namespace sdiff {

std::shared_ptr<rocksdb::EventListener> NewMasterListener() {
  return std::make_shared<plugin::MasterListener>();
}

Status Master::Attach(rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> families,
                      MasterOptions options, std::unique_ptr<Master>* out) {
  plugin::MasterOptions internal = plugin::FromPublic(options);
  if (options.listener) {
    internal.listener = std::dynamic_pointer_cast<plugin::MasterListener>(options.listener);
    if (!internal.listener) {
      return Status::InvalidArgument(
          "MasterOptions::listener must come from sdiff::NewMasterListener()");
    }
  }
  std::unique_ptr<plugin::Master> impl;
  Status s = plugin::Master::Attach(db, std::move(families), std::move(internal), &impl);
  if (!s.ok()) return s;
  out->reset(new Master(std::move(impl)));
  return Status::OK();
}

Master::Master(std::unique_ptr<plugin::Master> impl) : impl_(std::move(impl)) {}

Master::~Master() = default;

// One call into plugin::Master, whose NotifyWrite is inline.
void Master::NotifyWrite() { impl_->NotifyWrite(); }

void Master::RequestSyncAll() { impl_->RequestSyncAll(); }

Status Master::WaitForFollowers(uint64_t seq, size_t count, std::chrono::milliseconds timeout) {
  return impl_->WaitForFollowers(seq, count, timeout);
}

uint16_t Master::port() const { return impl_->port(); }

const std::string& Master::master_id() const { return impl_->master_id(); }

MasterStatus Master::status() { return plugin::ToPublic(impl_->status()); }

Status Master::Audit(AuditResult* result) {
  plugin::AuditResult internal;
  Status s = impl_->Audit(&internal);
  *result = plugin::ToPublic(internal);
  return s;
}

}  // namespace sdiff
