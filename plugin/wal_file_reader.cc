// Reading RocksDB's log format from a WAL file that is still being written.
#include "plugin/wal_file_reader.h"

#include <isa-l/crc.h>

#include <algorithm>
#include <utility>

namespace sdiff::plugin {
namespace {

constexpr uint64_t kBlockSize = 32768;
// checksum (4) | length (2) | type (1)
constexpr uint64_t kHeaderSize = 4 + 2 + 1;
// checksum (4) | length (2) | type (1) | log number (4)
constexpr uint64_t kRecyclableHeaderSize = kHeaderSize + 4;

enum RecordType : uint8_t {
  kZeroType = 0,  // preallocated, unwritten space (or a recyclable block's padding)
  kFullType = 1,
  kFirstType = 2,
  kMiddleType = 3,
  kLastType = 4,
  kRecyclableFullType = 5,
  kRecyclableFirstType = 6,
  kRecyclableMiddleType = 7,
  kRecyclableLastType = 8,
  kSetCompressionType = 9,  // the rest of the file is compressed (wal_compression)
};

// How much to read from the file at once when more bytes are needed.
constexpr size_t kReadChunk = 256 << 10;
// Consumed bytes kept at the front of the buffer before it is compacted.
constexpr size_t kCompactAt = 1 << 20;

uint32_t DecodeFixed32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return uint32_t{u[0]} | uint32_t{u[1]} << 8 | uint32_t{u[2]} << 16 | uint32_t{u[3]} << 24;
}

// RocksDB stores crc32c(type, [log number], payload) masked, so that a
// checksum of data that itself holds checksums is not a fixed point.
uint32_t UnmaskCrc(uint32_t masked) {
  constexpr uint32_t kMaskDelta = 0xa282ead8u;
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

// CRC32C (Castagnoli), as RocksDB computes it. ISA-L picks the CPU's CRC32
// instruction (SSE4.2, ARMv8 CRC) at run time: about a tenth of the cost of
// a table a byte at a time, which was 10% of the tailer's CPU at batch 1.
// Its crc32_iscsi neither inverts the initial value nor the result.
uint32_t Crc32c(const char* data, size_t n) {
  return ~crc32_iscsi(reinterpret_cast<unsigned char*>(const_cast<char*>(data)),
                      static_cast<int>(n), 0xFFFFFFFFu);
}

}  // namespace

Status WalFileReader::Open(rocksdb::FileSystem* fs, const std::string& path, uint64_t log_number,
                           bool recycled, std::unique_ptr<WalFileReader>* out) {
  rocksdb::FileOptions options;
  options.use_mmap_reads = false;  // a mapping would end at the size the file had when opened
  options.use_direct_reads = false;
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  rocksdb::IOStatus s = fs->NewRandomAccessFile(path, options, &file, nullptr);
  if (!s.ok()) {
    return s.IsNotFound() ? Status::NotFound(path + ": " + s.ToString())
                          : Status::IOError("opening WAL file " + path + ": " + s.ToString());
  }
  out->reset(new WalFileReader(std::move(file), path, log_number, recycled));
  return Status::OK();
}

WalFileReader::WalFileReader(std::unique_ptr<rocksdb::FSRandomAccessFile> file, std::string path,
                             uint64_t log_number, bool recycled)
    : file_(std::move(file)),
      path_(std::move(path)),
      log_number_(log_number),
      recyclable_(recycled) {}

bool WalFileReader::Fill(uint64_t end) {
  uint64_t have = buf_start_ + buf_.size();
  if (end <= have) return true;
  if (pos_ - buf_start_ >= kCompactAt) {
    buf_.erase(0, pos_ - buf_start_);
    buf_start_ = pos_;
  }
  while (have < end) {
    const size_t want = std::max<uint64_t>(end - have, kReadChunk);
    if (scratch_size_ < want) {
      scratch_.reset(new char[want]);  // uninitialised: Read fills what it returns
      scratch_size_ = want;
    }
    rocksdb::Slice got;
    rocksdb::IOStatus s =
        file_->Read(have, want, rocksdb::IOOptions(), &got, scratch_.get(), nullptr);
    if (!s.ok()) return false;  // read again on the next call; a lasting error shows as a gap
    buf_.append(got.data(), got.size());
    have += got.size();
    if (got.size() < want) break;  // the file ends here, for now
  }
  return have >= end;
}

WalFileReader::Result WalFileReader::ReadPhysical(uint8_t* type, std::string_view* payload,
                                                  Status* error) {
  for (;;) {
    const uint64_t block_left = kBlockSize - pos_ % kBlockSize;
    if (block_left < kHeaderSize) {  // the block's trailer: zeros, then the next block
      if (!Fill(pos_ + block_left)) return Result::kEnd;
      pos_ += block_left;
      continue;
    }
    if (!Fill(pos_ + kHeaderSize)) return Result::kEnd;
    const char* header = buf_.data() + (pos_ - buf_start_);
    const uint32_t masked = DecodeFixed32(header);
    const uint32_t length =
        uint32_t{static_cast<uint8_t>(header[4])} | uint32_t{static_cast<uint8_t>(header[5])} << 8;
    const uint8_t t = static_cast<uint8_t>(header[6]);
    if (t == kZeroType && length == 0 && masked == 0) {
      // A recyclable writer pads a block with fewer than its 11 header bytes
      // left; anywhere else zeros are space not written yet.
      if (recyclable_ && block_left < kRecyclableHeaderSize) {
        if (!Fill(pos_ + block_left)) return Result::kEnd;
        pos_ += block_left;
        continue;
      }
      return Result::kEnd;
    }
    if (t == kSetCompressionType) {
      *error = Status::Corruption(path_ +
                                  ": the WAL is compressed (wal_compression), which sdiff cannot "
                                  "read");
      return Result::kCorrupt;
    }
    const bool recyclable_type = t >= kRecyclableFullType && t <= kRecyclableLastType;
    if (!recyclable_type && (t < kFullType || t > kLastType)) {
      if (recyclable_) return Result::kEnd;  // a reused file's old bytes
      *error = Status::Corruption(path_ + ": unknown WAL record type " + std::to_string(t) +
                                  " at offset " + std::to_string(pos_));
      return Result::kCorrupt;
    }
    // Once a file holds recyclable records, anything else after them is what
    // the file held before RocksDB reused it.
    if (recyclable_ && !recyclable_type) return Result::kEnd;
    const uint64_t header_size = recyclable_type ? kRecyclableHeaderSize : kHeaderSize;
    if (header_size + length > block_left) {
      if (recyclable_type) return Result::kEnd;
      *error = Status::Corruption(path_ + ": a WAL record crosses its block at offset " +
                                  std::to_string(pos_));
      return Result::kCorrupt;
    }
    if (!Fill(pos_ + header_size + length)) return Result::kEnd;
    header = buf_.data() + (pos_ - buf_start_);  // Fill may have moved the buffer
    if (recyclable_type &&
        DecodeFixed32(header + kHeaderSize) != static_cast<uint32_t>(log_number_)) {
      return Result::kEnd;  // a record of the file's previous life
    }
    // type, [log number], payload; length < kBlockSize, so it fits an int
    if (Crc32c(header + 6, header_size - 6 + length) != UnmaskCrc(masked)) {
      // In a reused file, a record being written over an old one shows the
      // old bytes until it is complete: the end, for now.
      if (recyclable_type) return Result::kEnd;
      *error = Status::Corruption(path_ + ": WAL record checksum mismatch at offset " +
                                  std::to_string(pos_));
      return Result::kCorrupt;
    }
    if (recyclable_type) recyclable_ = true;
    *type = recyclable_type ? t - (kRecyclableFullType - kFullType) : t;
    *payload = std::string_view(header + header_size, length);
    pos_ += header_size + length;
    return Result::kRecord;
  }
}

WalFileReader::Result WalFileReader::Next(std::string* record, Status* error) {
  for (;;) {
    uint8_t type = 0;
    std::string_view payload;
    Result r = ReadPhysical(&type, &payload, error);
    if (r != Result::kRecord) return r;
    switch (type) {
      case kFullType:
        if (in_fragments_) break;
        record->assign(payload);
        return Result::kRecord;
      case kFirstType:
        if (in_fragments_) break;
        fragments_.assign(payload);
        in_fragments_ = true;
        continue;
      case kMiddleType:
        if (!in_fragments_) break;
        fragments_.append(payload);
        continue;
      case kLastType:
        if (!in_fragments_) break;
        fragments_.append(payload);
        in_fragments_ = false;
        *record = std::move(fragments_);
        fragments_.clear();
        return Result::kRecord;
    }
    *error = Status::Corruption(path_ + ": WAL record fragments out of order before offset " +
                                std::to_string(pos_));
    return Result::kCorrupt;
  }
}

}  // namespace sdiff::plugin
