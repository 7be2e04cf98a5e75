// AddOp (see write_batch_op.h).
#include "plugin/write_batch_op.h"

#include <rocksdb/write_batch.h>

namespace sdiff::plugin {

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

}  // namespace sdiff::plugin
