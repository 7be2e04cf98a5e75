// Status: the result of an operation that can fail at a module boundary
// (decoding, I/O, protocol). Errors are values; exceptions never cross modules.
// Public: part of the embedder's API (include/sdiff/); std-only.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace sdiff {

class Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,
    kCorruption,       // malformed bytes from a peer or a file
    kInvalidArgument,  // a caller passed something unusable
    kProtocolError,    // a peer broke the protocol's rules
    kIOError,
    kAborted,
    kTimedOut,  // a wait's deadline passed first
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status ProtocolError(std::string_view msg) { return Status(Code::kProtocolError, msg); }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status Aborted(std::string_view msg) { return Status(Code::kAborted, msg); }
  static Status TimedOut(std::string_view msg) { return Status(Code::kTimedOut, msg); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsProtocolError() const { return code_ == Code::kProtocolError; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsAborted() const { return code_ == Code::kAborted; }
  bool IsTimedOut() const { return code_ == Code::kTimedOut; }

  // The message alone, without the code's name.
  const std::string& message() const { return message_; }
  // "OK" or "<code name>: <message>", for logs and one-line errors.
  std::string ToString() const;

 private:
  Status(Code code, std::string_view msg) : code_(code), message_(msg) {}

  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace sdiff
