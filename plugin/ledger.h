// Ledger: a file where a follower writes down what its repairs overwrite, so
// that writes a failover discards are recorded instead of lost. Before a
// diff's repair (or a bootstrap entry) changes or deletes a key, the value the
// replica held is appended, and the file fsynced, before the change is
// applied; `sdiff-ldb --master=M load FILE` replays it (docs/operations.md,
// "Failover").
//
// Format: text, one entry a line, in the hex escaping `sdiff-ldb load --hex`
// reads (load recognizes a ledger by its first line and reads it so):
//
//   # sdiff ledger v1                  the file's first line
//   # family 0x64656661756C74          the column family of the lines below (name in hex)
//   0x6B31<TAB>0x7631                  KEY<TAB>VALUE the replica held: replay puts it back
//   0x6B32<TAB>-                       the replica did not hold KEY (a repair added it):
//                                      replay deletes it
//   # ...                              any other line starting with '#': a comment
//
// Every line ends with '\n'. A key repaired twice appears twice, the older
// value first; an entry whose write then failed (a full disk) is appended
// again, with the same value, when the repair is retried.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace sdiff::plugin {

inline constexpr std::string_view kLedgerHeader = "# sdiff ledger v1";

// "0x" and upper-case hex digits: how the ledger writes keys and values, and
// how `sdiff-ldb --hex` prints them (and load reads them back).
std::string HexBytes(std::string_view bytes);

// What the replica held of one key before a repair changed it.
struct LedgerEntry {
  std::string family;  // the column family's name
  std::string key;
  std::optional<std::string> value;  // nullopt: the replica did not hold the key
};

class Ledger {
 public:
  // Opens `path` for appending: a missing or empty file gets the header
  // (fsynced, with its directory); an existing one must be a ledger.
  // InvalidArgument names the path when it cannot be one.
  static Status Open(const std::string& path, std::unique_ptr<Ledger>* out);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Appends `entries` and fsyncs the file; on an error nothing of them stays.
  // One caller at a time (the follower's apply thread).
  Status Append(const std::vector<LedgerEntry>& entries);
  const std::string& path() const { return path_; }
  uint64_t appended() const { return appended_; }  // entries since Open

 private:
  Ledger(std::string path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}

  const std::string path_;
  const int fd_;
  uint64_t size_;                           // bytes in the file
  std::optional<std::string> last_family_;  // of the last line written since Open
  uint64_t appended_ = 0;
};

// One line of a ledger, parsed (without its '\n').
struct LedgerLine {
  enum class Kind {
    kComment,  // the header, a comment or an empty line: nothing to do
    kFamily,   // `family` holds the name for the lines after it
    kPut,      // put `key` = `value`
    kDelete,   // delete `key`
  };
  Kind kind = Kind::kComment;
  std::string family, key, value;
};
// InvalidArgument says what is wrong with the line.
Status ParseLedgerLine(std::string_view line, LedgerLine* out);

}  // namespace sdiff::plugin
