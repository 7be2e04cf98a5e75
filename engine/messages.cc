// Names of the protocol messages, for errors and logs, and the memory a batch holds.
#include "engine/messages.h"

#include <array>

namespace sdiff {

size_t BatchBytes(const Batch& batch) {
  size_t bytes = 32;
  for (const Op& op : batch.ops) bytes += op.key.size() + op.value.size() + 8;
  return bytes;
}

const char* MessageName(const Message& m) {
  // In the order of the Message variant's alternatives.
  static constexpr std::array<const char*, std::variant_size_v<Message>> kNames = {
      "Hello",       "Challenge",      "Auth",     "Welcome",      "Reject",      "Batch",
      "SyncRequest", "SyncStart",      "SyncRoot", "NodesRequest", "Nodes",       "Repair",
      "SyncDone",    "BootstrapChunk", "Ping",     "Pong",         "Write",       "WriteAck",
      "FileChunk",   "BatchPart",      "PutStart", "ValuePart",    "AuditReport",
  };
  return m.valueless_by_exception() ? "(no message)" : kNames[m.index()];
}

bool IsPlainFileName(std::string_view name) {
  constexpr size_t kMaxFileName = 255;
  return !name.empty() && name.size() <= kMaxFileName && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string_view::npos;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kInspector:
      return "inspector";
    case Role::kWriter:
      return "writer";
    case Role::kCloner:
      return "cloner";
    case Role::kAuditor:
      return "auditor";
  }
  return "unknown role";
}

}  // namespace sdiff
