// The ledger file: appending fsynced entries, and parsing its lines for replay.
#include "plugin/ledger.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

namespace sdiff::plugin {
namespace {

constexpr std::string_view kFamilyPrefix = "# family ";
constexpr std::string_view kAbsent = "-";

Status Errno(const std::string& what, const std::string& path) {
  return Status::IOError(what + " " + path + ": " + std::strerror(errno));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "0x" and an even number of hex digits, in either case.
bool Unhex(std::string_view hex, std::string* out) {
  if (hex.size() < 2 || hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X')) return false;
  hex.remove_prefix(2);
  if (hex.size() % 2 != 0) return false;
  out->clear();
  out->reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexDigit(hex[i]), lo = HexDigit(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IOError(std::strerror(n < 0 ? errno : EIO));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::OK();
}

// The file's name in its directory must survive a crash too.
Status SyncParent(const std::string& path) {
  std::string parent = std::filesystem::absolute(path).parent_path().string();
  int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return Errno("cannot open the directory of", path);
  int rc = ::fsync(dir);
  ::close(dir);
  return rc == 0 ? Status::OK() : Errno("cannot fsync the directory of", path);
}

}  // namespace

Status Ledger::Open(const std::string& path, std::unique_ptr<Ledger>* out) {
  if (path.empty()) return Status::InvalidArgument("--ledger: no file given");
  int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::InvalidArgument("cannot open the ledger " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("the ledger " + path + " is not a regular file");
  }
  std::unique_ptr<Ledger> ledger(new Ledger(path, fd, static_cast<uint64_t>(st.st_size)));
  const std::string header = std::string(kLedgerHeader) + "\n";
  if (st.st_size == 0) {
    Status s = WriteAll(fd, header);
    if (s.ok() && ::fdatasync(fd) != 0) s = Errno("cannot fsync", path);
    if (s.ok()) s = SyncParent(path);
    if (!s.ok()) return Status::IOError("cannot write the ledger " + path + ": " + s.message());
    ledger->size_ = header.size();
  } else {
    std::string first(header.size(), '\0');
    ssize_t n = ::pread(fd, first.data(), first.size(), 0);
    if (n != static_cast<ssize_t>(first.size()) || first != header) {
      return Status::InvalidArgument(path + " is not an sdiff ledger (its first line is not \"" +
                                     std::string(kLedgerHeader) +
                                     "\"): give a new file or a ledger to append to");
    }
  }
  *out = std::move(ledger);
  return Status::OK();
}

Ledger::~Ledger() { ::close(fd_); }

Status Ledger::Append(const std::vector<LedgerEntry>& entries) {
  if (entries.empty()) return Status::OK();
  std::string text;
  std::optional<std::string> family = last_family_;
  for (const LedgerEntry& e : entries) {
    if (family != e.family) {
      family = e.family;
      text.append(kFamilyPrefix).append(HexBytes(e.family)).push_back('\n');
    }
    text.append(HexBytes(e.key)).push_back('\t');
    text.append(e.value ? HexBytes(*e.value) : std::string(kAbsent)).push_back('\n');
  }
  Status s = WriteAll(fd_, text);
  if (s.ok() && ::fdatasync(fd_) != 0) s = Errno("cannot fsync", path_);
  if (!s.ok()) {
    // A torn line would stop a replay there: take back what was written.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      return Status::IOError("cannot write the ledger " + path_ + " (" + s.message() +
                             ") nor take the partial entries back: " + std::strerror(errno));
    }
    return Status::IOError("cannot write the ledger " + path_ + ": " + s.message());
  }
  size_ += text.size();
  last_family_ = std::move(family);
  appended_ += entries.size();
  return Status::OK();
}

Status ParseLedgerLine(std::string_view line, LedgerLine* out) {
  *out = LedgerLine();
  if (line.empty()) return Status::OK();
  if (line.front() == '#') {
    if (!line.starts_with(kFamilyPrefix)) return Status::OK();
    out->kind = LedgerLine::Kind::kFamily;
    if (!Unhex(line.substr(kFamilyPrefix.size()), &out->family)) {
      return Status::InvalidArgument("a family line whose name is not 0x and hex digits");
    }
    return Status::OK();
  }
  size_t tab = line.find('\t');
  if (tab == std::string_view::npos) {
    return Status::InvalidArgument("no tab between key and value");
  }
  if (!Unhex(line.substr(0, tab), &out->key)) {
    return Status::InvalidArgument("the key is not 0x and hex digits");
  }
  std::string_view value = line.substr(tab + 1);
  if (value == kAbsent) {
    out->kind = LedgerLine::Kind::kDelete;
    return Status::OK();
  }
  if (!Unhex(value, &out->value)) {
    return Status::InvalidArgument("the value is neither 0x and hex digits nor \"-\"");
  }
  out->kind = LedgerLine::Kind::kPut;
  return Status::OK();
}

std::string HexBytes(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out = "0x";
  out.reserve(2 + 2 * bytes.size());
  for (char c : bytes) {
    auto u = static_cast<unsigned char>(c);
    out.push_back(kDigits[u >> 4]);
    out.push_back(kDigits[u & 0xf]);
  }
  return out;
}

}  // namespace sdiff::plugin
