// DbRequest's constructors and ServeDbRequest: a request done with MasterHooks.
#include "engine/master_hooks.h"

#include <utility>

namespace sdiff {

DbRequest DbRequest::ReadKeys(std::vector<KeyRef> keys) {
  DbRequest r;
  r.kind = Kind::kReadKeys;
  r.keys = std::move(keys);
  return r;
}

DbRequest DbRequest::OpenBootstrap(bool resume, FamilyTag after_family, std::string after_key) {
  DbRequest r;
  r.kind = Kind::kOpenBootstrap;
  r.resume = resume;
  r.family = after_family;
  r.key = std::move(after_key);
  return r;
}

DbRequest DbRequest::ScanBootstrap(size_t max_bytes) {
  DbRequest r;
  r.kind = Kind::kScanBootstrap;
  r.max_bytes = max_bytes;
  return r;
}

DbRequest DbRequest::OpenFiles() {
  DbRequest r;
  r.kind = Kind::kOpenFiles;
  return r;
}

DbRequest DbRequest::ReadFile(std::shared_ptr<FileSource> files, size_t index, uint64_t offset,
                              size_t max_bytes, std::string buffer) {
  DbRequest r;
  r.kind = Kind::kReadFile;
  r.files = std::move(files);
  r.file_index = index;
  r.offset = offset;
  r.max_bytes = max_bytes;
  r.buffer = std::move(buffer);
  return r;
}

DbRequest DbRequest::CommitWrite(std::vector<Op> ops) {
  DbRequest r;
  r.kind = Kind::kCommitWrite;
  r.ops = std::move(ops);
  return r;
}

DbAnswer ServeDbRequest(const MasterHooks& hooks, DbRequest request) {
  DbAnswer a;
  a.kind = request.kind;
  switch (request.kind) {
    case DbRequest::Kind::kReadKeys:
      a.status = hooks.read(request.keys, &a.values);
      if (a.status.ok() && a.values.size() != request.keys.size()) {
        a.status = Status::IOError("read returned the wrong number of values");
      }
      a.keys = std::move(request.keys);
      break;
    case DbRequest::Kind::kOpenBootstrap:
      a.seq = hooks.open_bootstrap(request.resume, request.family, request.key);
      break;
    case DbRequest::Kind::kScanBootstrap:
      a.done = hooks.scan_bootstrap(request.max_bytes, &a.ops);
      break;
    case DbRequest::Kind::kOpenFiles: {
      std::unique_ptr<FileSource> files;
      a.status = hooks.open_files(&files);
      a.files = std::move(files);
      break;
    }
    case DbRequest::Kind::kReadFile:
      a.data = std::move(request.buffer);
      a.status =
          request.files->Read(request.file_index, request.offset, request.max_bytes, &a.data);
      break;
    case DbRequest::Kind::kCommitWrite:
      a.status = hooks.write(request.ops, &a.seq);
      break;
  }
  return a;
}

}  // namespace sdiff
