// Small fixed-size blocks for the merkle tree's nodes, carved from 64 KB slabs.
//
// A leaf of a 16-byte key is 40 bytes; malloc gives it a 48-byte chunk (an
// 8-byte header, rounded to 16) and costs a call per insert. Blocks here are
// any multiple of 8 bytes up to kMaxBytes, with no header: a freed block goes
// on its thread's free list for its size and the next allocation of that size
// takes it back.
//
// Threads: Allocate and Free may be called from any thread, and a block may be
// freed on another thread than the one that allocated it (a view dropped by a
// diff thread frees nodes the writer allocated). Each thread keeps its own free
// lists; one that grows long hands blocks to a shared list in batches, where
// any thread's allocations find them, and a thread hands back everything it
// kept when it exits. Slabs are never given back to malloc: freed blocks are
// kept for the next nodes of that size, of any tree.
//
// Built with AddressSanitizer, every block is its own malloc, so that a use
// after free is still caught.
#pragma once

#include <cstddef>

namespace sdiff::node_slabs {

constexpr size_t kGranule = 8;
// Larger blocks come from malloc (the caller's business).
constexpr size_t kMaxBytes = 256;

// The block size serving a request of `bytes`: the next multiple of kGranule.
constexpr size_t BlockSize(size_t bytes) { return (bytes + kGranule - 1) & ~(kGranule - 1); }

// A block of BlockSize(bytes) bytes, 8-aligned; bytes in [1, kMaxBytes].
// Throws std::bad_alloc if malloc cannot give a new slab.
void* Allocate(size_t bytes);
// Gives back a block from Allocate(bytes), with the same `bytes`.
void Free(void* block, size_t bytes);

struct Stats {
  size_t slab_bytes;  // bytes of slabs taken from malloc, used or free
  size_t free_bytes;  // of those, bytes in freed blocks kept for reuse
};
// Process-wide, over every thread.
Stats GetStats();

}  // namespace sdiff::node_slabs
