// Status names for logs.
#include "sdiff/status.h"

namespace sdiff {

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      name = "not found";
      break;
    case Code::kCorruption:
      name = "corruption";
      break;
    case Code::kInvalidArgument:
      name = "invalid argument";
      break;
    case Code::kProtocolError:
      name = "protocol error";
      break;
    case Code::kIOError:
      name = "I/O error";
      break;
    case Code::kAborted:
      name = "aborted";
      break;
    case Code::kTimedOut:
      name = "timed out";
      break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace sdiff
