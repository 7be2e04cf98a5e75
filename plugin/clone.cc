// CloneFromMaster: an engine CloneSession whose chunks go to fsynced files in
// a staging directory, which becomes the follower's database once whole.
#include "plugin/clone.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "engine/clone_session.h"
#include "net/hmac_authenticator.h"
#include "net/secure_random.h"
#include "plugin/follower_store.h"

namespace sdiff::plugin {
namespace {

namespace fs = std::filesystem;

Status Errno(std::string_view what, const std::string& path) {
  return Status::IOError(std::string(what) + " " + path + ": " + strerror(errno));
}

Status SyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path);
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return rc == 0 ? Status::OK() : Errno("cannot fsync", path);
}

// Writes the chunks of one file after another into `dir`.
class FileWriter {
 public:
  FileWriter(std::string dir, ProgressFn progress)
      : dir_(std::move(dir)), progress_(std::move(progress)) {}
  ~FileWriter() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Write(const FileChunk& chunk) {
    if (chunk.offset == 0) {
      path_ = dir_ + "/" + chunk.name;
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd_ < 0) return Errno("cannot create", path_);
    }
    const char* p = chunk.data.data();
    size_t left = chunk.data.size();
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("cannot write", path_);
      p += n;
      left -= static_cast<size_t>(n);
    }
    bytes_ += chunk.data.size();
    if (!chunk.data.empty()) {
      // Start writing this piece to the disk now, so the fsync at the file's
      // end waits for little; the copy's speed is then the slower of the
      // network and the disk, not their sum. Advisory: errors show at fsync.
      ::sync_file_range(fd_, static_cast<off_t>(chunk.offset),
                        static_cast<off_t>(chunk.data.size()), SYNC_FILE_RANGE_WRITE);
    }
    if (chunk.offset + chunk.data.size() == chunk.file_size) {
      // Durable before the directory is renamed into place: a crash after
      // the rename must find whole files.
      if (::fdatasync(fd_) != 0) return Errno("cannot fsync", path_);
      ::close(fd_);
      fd_ = -1;
      ++files_;
    }
    if (progress_) progress_(Progress{Progress::Kind::kClone, bytes_, 0, chunk.last});
    return Status::OK();
  }

  uint64_t files() const { return files_; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::string dir_;
  ProgressFn progress_;
  std::string path_;
  int fd_ = -1;
  uint64_t files_ = 0;
  uint64_t bytes_ = 0;
};

// The session as the runner drives it: finished well once the copy is whole.
class CloneProtocol : public net::ClientProtocol {
 public:
  CloneProtocol(const Authenticator* authenticator, FileWriter* writer)
      : session_(CloneOptions{.authenticator = authenticator},
                 CloneHooks{
                     .random_bytes = net::SecureRandomBytes,
                     .write = [writer](const FileChunk& chunk) { return writer->Write(chunk); }}) {}

  void Start() override { session_.Start(); }
  void OnBytes(std::string_view bytes) override { session_.OnBytes(bytes); }
  void OnTick(int64_t now_ms) override { session_.OnTick(now_ms); }
  std::string TakeOutput() override { return session_.TakeOutput(); }
  bool finished() const override { return session_.finished(); }
  Status error() const override { return session_.done() ? Status::OK() : session_.error(); }

  const CloneSession& session() const { return session_; }

 private:
  CloneSession session_;
};

// The path without dot segments or trailing separators, or "" when it
// names no directory of its own ("/", ".", "..").
std::string NormalPath(const std::string& path) {
  std::string s = fs::path(path).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  fs::path name = fs::path(s).filename();
  if (s.empty() || name.empty() || name == "." || name == ".." || s == "/") return "";
  return s;
}

std::string ParentOf(const std::string& normal) {
  fs::path parent = fs::path(normal).parent_path();
  return parent.empty() ? "." : parent.string();
}

bool EmptyOrMissing(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return true;
  return fs::is_directory(path, ec) && fs::is_empty(path, ec);
}

}  // namespace

bool CanCloneInto(const std::string& db_path) {
  std::string path = NormalPath(db_path);
  return !path.empty() && EmptyOrMissing(path);
}

std::string CloneStagingPath(const std::string& db_path) {
  std::string path = NormalPath(db_path);
  return path.empty() ? "" : path + ".sdiff-clone";
}

Status CloneFromMaster(const CloneFromMasterOptions& options, CloneResult* result) {
  *result = CloneResult{};
  const std::string db_path = NormalPath(options.db_path);
  if (db_path.empty()) {
    return Status::InvalidArgument(
        "'" + options.db_path + "' names no directory of its own to copy the master's files into");
  }
  if (!EmptyOrMissing(db_path)) {
    return Status::InvalidArgument(db_path + " is not empty: only an empty follower clones");
  }
  // The copy is staged beside the database path and renamed into it, which
  // works only on one filesystem: an empty mount point cannot take it.
  struct stat parent_st {};
  struct stat db_st {};
  if (::stat(db_path.c_str(), &db_st) == 0 && ::stat(ParentOf(db_path).c_str(), &parent_st) == 0 &&
      db_st.st_dev != parent_st.st_dev) {
    return Status::InvalidArgument(db_path +
                                   " is a mount point: a copy staged beside it cannot be moved "
                                   "into it");
  }
  const std::string staging = CloneStagingPath(db_path);
  std::error_code ec;
  fs::remove_all(staging, ec);  // an earlier clone that did not finish
  if (ec) return Status::IOError("cannot remove " + staging + ": " + ec.message());
  fs::create_directories(staging, ec);
  if (ec) return Status::IOError("cannot create " + staging + ": " + ec.message());

  std::unique_ptr<net::HmacAuthenticator> authenticator;
  if (!options.secret.empty()) {
    authenticator = std::make_unique<net::HmacAuthenticator>(options.secret);
  }
  Status s;
  {
    FileWriter writer(staging, options.progress);
    CloneProtocol protocol(authenticator.get(), &writer);
    s = net::RunClientSession(options.connect, &protocol, options.secret);
    if (!s.ok() && protocol.session().refused_role()) s = Status::NotFound(s.message());
    result->files = writer.files();
    result->bytes = writer.bytes();
    if (s.ok()) {
      const Welcome& welcome = protocol.session().welcome();
      result->master_id = welcome.master_id;
      s = AdoptClone(staging, welcome.master_id, welcome.families, options.rocks, &result->seq);
    }
  }
  if (s.ok()) s = SyncPath(staging);
  if (s.ok()) {
    // rename(2) replaces an empty directory, so a database path created
    // empty in advance works too.
    fs::rename(staging, db_path, ec);
    if (ec) s = Status::IOError("cannot move the copy to " + db_path + ": " + ec.message());
  }
  if (s.ok()) s = SyncPath(ParentOf(db_path));
  if (!s.ok()) {
    fs::remove_all(staging, ec);
    // The work ended: a progress display must not be left hanging.
    if (options.progress)
      options.progress(Progress{Progress::Kind::kClone, result->bytes, 0, true});
  }
  return s;
}

}  // namespace sdiff::plugin
