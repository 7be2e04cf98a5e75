// Per-thread free lists and bump regions over shared 64 KB slabs (node_slabs.h).
//
// A thread's cache holds, per block size, a singly linked list of free blocks
// threaded through the blocks themselves, and the uncarved rest of its current
// slab. Only its own thread touches a cache's lists, so the fast paths take no
// lock and no atomic read-modify-write. The shared state (lists handed over in
// whole batches, regions left by exited threads, the caches to count) sits
// behind one mutex, taken once per batch or slab.
#include "engine/node_slabs.h"

#include <atomic>
#include <cassert>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define SDIFF_NODE_SLABS_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SDIFF_NODE_SLABS_MALLOC 1
#endif
#endif

namespace sdiff::node_slabs {

#if defined(SDIFF_NODE_SLABS_MALLOC)

void* Allocate(size_t bytes) {
  void* p = std::malloc(BlockSize(bytes));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void Free(void* block, size_t) { std::free(block); }

Stats GetStats() { return Stats{0, 0}; }

#else

namespace {

constexpr size_t kClasses = kMaxBytes / kGranule + 1;  // indexed by size / kGranule
constexpr size_t kSlabBytes = 64 * 1024;
// A thread's list of one size longer than this goes to the shared lists whole,
// so a thread that only frees (a diff dropping its view) keeps little.
constexpr size_t kMaxKept = 512;

struct FreeBlock {
  FreeBlock* next;
};

struct Batch {
  FreeBlock* head;
  size_t count;
};

struct ThreadCache {
  FreeBlock* heads[kClasses] = {};
  size_t counts[kClasses] = {};
  char* bump = nullptr;  // the uncarved rest of the current slab
  char* bump_end = nullptr;
  // Written only by the owning thread (load + store, no RMW); read by GetStats.
  std::atomic<size_t> free_bytes{0};

  void AddFree(ptrdiff_t delta) {
    free_bytes.store(free_bytes.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
};

struct Region {
  char* begin;
  char* end;
};

struct Shared {
  std::mutex mu;
  // Guarded by mu:
  std::vector<Batch> batches[kClasses];
  std::vector<Region> regions;  // rests of slabs left by exited threads
  std::vector<ThreadCache*> caches;
  size_t free_bytes = 0;  // in batches
  size_t slab_bytes = 0;
};

// Never destroyed: nodes may be freed by static destructors after any other
// object's teardown.
Shared& shared() {
  static Shared* s = new Shared;
  return *s;
}

// Moves one size's list from a thread's cache to the shared batches.
void HandOverLocked(Shared& s, ThreadCache* tc, size_t index) {
  if (tc->counts[index] == 0) return;
  s.batches[index].push_back(Batch{tc->heads[index], tc->counts[index]});
  const size_t bytes = tc->counts[index] * index * kGranule;
  s.free_bytes += bytes;
  tc->AddFree(-static_cast<ptrdiff_t>(bytes));
  tc->heads[index] = nullptr;
  tc->counts[index] = 0;
}

// Flushes a thread's cache into the shared state when the thread exits.
struct CacheOwner {
  ThreadCache* cache = nullptr;
  ~CacheOwner();
};

thread_local ThreadCache* t_cache = nullptr;
thread_local bool t_exited = false;
thread_local CacheOwner t_owner;

CacheOwner::~CacheOwner() {
  if (cache != nullptr) {
    Shared& s = shared();
    std::lock_guard<std::mutex> lock(s.mu);
    for (size_t i = 0; i < kClasses; ++i) HandOverLocked(s, cache, i);
    if (cache->bump != cache->bump_end) s.regions.push_back(Region{cache->bump, cache->bump_end});
    std::erase(s.caches, cache);
    delete cache;
  }
  t_cache = nullptr;
  t_exited = true;
}

ThreadCache* NewCache() {
  auto* tc = new ThreadCache;
  {
    Shared& s = shared();
    std::lock_guard<std::mutex> lock(s.mu);
    s.caches.push_back(tc);
  }
  // A cache made while the thread's destructors run is never flushed: its
  // blocks stay with it (only frees from other thread-local destructors).
  if (!t_exited) t_owner.cache = tc;
  t_cache = tc;
  return tc;
}

ThreadCache* Cache() {
  ThreadCache* tc = t_cache;
  return tc != nullptr ? tc : NewCache();
}

void PushFree(ThreadCache* tc, void* block, size_t index) {
  auto* b = static_cast<FreeBlock*>(block);
  b->next = tc->heads[index];
  tc->heads[index] = b;
  ++tc->counts[index];
  tc->AddFree(static_cast<ptrdiff_t>(index * kGranule));
}

// A fresh region for the bump allocator: an exited thread's rest or a new
// slab. What is left of the old one becomes a free block of its size.
void NewRegion(ThreadCache* tc) {
  const size_t rest = static_cast<size_t>(tc->bump_end - tc->bump) / kGranule * kGranule;
  if (rest > 0) PushFree(tc, tc->bump, rest / kGranule);
  Shared& s = shared();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.regions.empty()) {
      tc->bump = s.regions.back().begin;
      tc->bump_end = s.regions.back().end;
      s.regions.pop_back();
      return;
    }
  }
  void* slab = std::malloc(kSlabBytes);
  if (slab == nullptr) throw std::bad_alloc();
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.slab_bytes += kSlabBytes;
  }
  tc->bump = static_cast<char*>(slab);
  tc->bump_end = tc->bump + kSlabBytes;
}

void* AllocateSlow(ThreadCache* tc, size_t index) {
  const size_t size = index * kGranule;
  {
    Shared& s = shared();
    std::lock_guard<std::mutex> lock(s.mu);
    std::vector<Batch>& batches = s.batches[index];
    if (!batches.empty()) {
      Batch batch = batches.back();
      batches.pop_back();
      const size_t bytes = batch.count * size;
      s.free_bytes -= bytes;
      FreeBlock* block = batch.head;
      tc->heads[index] = block->next;
      tc->counts[index] = batch.count - 1;
      tc->AddFree(static_cast<ptrdiff_t>(bytes - size));
      return block;
    }
  }
  if (static_cast<size_t>(tc->bump_end - tc->bump) < size) NewRegion(tc);
  void* block = tc->bump;
  tc->bump += size;
  return block;
}

}  // namespace

void* Allocate(size_t bytes) {
  assert(bytes > 0 && bytes <= kMaxBytes);
  const size_t index = BlockSize(bytes) / kGranule;
  ThreadCache* tc = Cache();
  FreeBlock* block = tc->heads[index];
  if (block == nullptr) return AllocateSlow(tc, index);
  tc->heads[index] = block->next;
  --tc->counts[index];
  tc->AddFree(-static_cast<ptrdiff_t>(index * kGranule));
  return block;
}

void Free(void* block, size_t bytes) {
  assert(bytes > 0 && bytes <= kMaxBytes);
  const size_t index = BlockSize(bytes) / kGranule;
  ThreadCache* tc = Cache();
  PushFree(tc, block, index);
  if (tc->counts[index] > kMaxKept) {
    Shared& s = shared();
    std::lock_guard<std::mutex> lock(s.mu);
    HandOverLocked(s, tc, index);
  }
}

Stats GetStats() {
  Shared& s = shared();
  std::lock_guard<std::mutex> lock(s.mu);
  Stats stats{s.slab_bytes, s.free_bytes};
  for (const ThreadCache* tc : s.caches) {
    stats.free_bytes += tc->free_bytes.load(std::memory_order_relaxed);
  }
  return stats;
}

#endif

}  // namespace sdiff::node_slabs
