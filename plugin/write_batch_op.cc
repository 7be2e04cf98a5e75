// AddOp (see write_batch_op.h).
#include "plugin/write_batch_op.h"

#include <rocksdb/write_batch.h>

namespace sdiff::plugin {
namespace {

// Collects the records AddOp writes; other families' records are skipped.
class OpCollector : public rocksdb::WriteBatch::Handler {
 public:
  OpCollector(const std::map<uint32_t, FamilyTag>& families, std::vector<Op>* out)
      : families_(families), out_(out) {}

  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    return Add(OpKind::kPut, cf, key, value);
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    return Add(OpKind::kDelete, cf, key, {});
  }
  rocksdb::Status DeleteRangeCF(uint32_t cf, const rocksdb::Slice& begin,
                                const rocksdb::Slice& end) override {
    return Add(OpKind::kDeleteRange, cf, begin, end);
  }

 private:
  rocksdb::Status Add(OpKind kind, uint32_t cf, const rocksdb::Slice& key,
                      const rocksdb::Slice& value) {
    auto family = families_.find(cf);
    if (family == families_.end()) return rocksdb::Status::OK();
    out_->push_back(Op{kind, family->second, key.ToString(), value.ToString()});
    return rocksdb::Status::OK();
  }

  const std::map<uint32_t, FamilyTag>& families_;
  std::vector<Op>* out_;
};

}  // namespace

rocksdb::Status AddOp(const Op& op, rocksdb::ColumnFamilyHandle* family,
                      rocksdb::WriteBatch* batch) {
  switch (op.kind) {
    case OpKind::kPut:
      return batch->Put(family, op.key, op.value);
    case OpKind::kDelete:
      return batch->Delete(family, op.key);
    case OpKind::kDeleteRange:
      return batch->DeleteRange(family, op.key, op.value);
  }
  return rocksdb::Status::InvalidArgument("unknown op kind");
}

rocksdb::Status OpsOf(const rocksdb::WriteBatch& batch,
                      const std::map<uint32_t, FamilyTag>& families, std::vector<Op>* out) {
  OpCollector collector(families, out);
  return batch.Iterate(&collector);
}

}  // namespace sdiff::plugin
