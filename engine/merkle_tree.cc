// Node layout, path copying and diff of the persistent merkle trie.
//
// A child is a tagged 64-bit slot: bits 56..63 hold the digit under which it
// hangs in its parent, bit 0 says "leaf", the rest is the node's address
// (user-space addresses on x86-64 and AArch64 Linux fit in 56 bits). Slots in an
// inner node are sorted by digit, so sorting slots as integers sorts by digit.
//
// Leaf  (24 bytes + key): refs, family, key size, leaf hash, key bytes.
// Inner (24 bytes + 8 per child): refs, depth, capacity, child count, hash, slots.
// Nodes up to 256 bytes (every leaf of a key up to 232 bytes, inner nodes of up
// to 29 children) are blocks of node_slabs, rounded up to 8 bytes and with no
// allocator header: a leaf of a 16-byte key takes 40 bytes where a malloc
// chunk took 48. Larger inner nodes are malloc chunks.
//
// A node whose reference count is 1 is reachable only through the path being
// written, so it is changed in place; a node shared with a view is copied first.
#include "engine/merkle_tree.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "engine/node_slabs.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sdiff {
namespace {

using Slot = uint64_t;
constexpr Slot kLeafBit = 1;
constexpr int kDigitShift = 56;
constexpr Slot kDigitMask = Slot{0xFF} << kDigitShift;
constexpr Slot kPtrMask = ~kDigitMask & ~kLeafBit;
constexpr int kMaxChildren = 256;
constexpr int kHashDigits = 16;

struct Leaf {
  static constexpr uint16_t kLongKey = 0xFFFF;  // a uint32 size precedes the key bytes

  std::atomic<uint32_t> refs;
  FamilyTag family;
  uint16_t short_size;
  Hash128 hash;

  const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view key() const {
    if (short_size != kLongKey) return {bytes(), short_size};
    uint32_t size;
    std::memcpy(&size, bytes(), sizeof(size));
    return {bytes() + sizeof(size), size};
  }
};
static_assert(sizeof(Leaf) == 24);

struct Inner {
  std::atomic<uint32_t> refs;
  uint8_t depth;
  uint8_t capacity_minus_one;
  uint16_t count;
  Hash128 hash;

  Slot* slots() { return reinterpret_cast<Slot*>(this + 1); }
  const Slot* slots() const { return reinterpret_cast<const Slot*>(this + 1); }
  int capacity() const { return capacity_minus_one + 1; }
};
static_assert(sizeof(Inner) == 24);

bool IsLeaf(Slot s) { return (s & kLeafBit) != 0; }
Leaf* AsLeaf(Slot s) { return reinterpret_cast<Leaf*>(s & kPtrMask); }
Inner* AsInner(Slot s) { return reinterpret_cast<Inner*>(s & kPtrMask); }
uint8_t DigitOf(Slot s) { return static_cast<uint8_t>(s >> kDigitShift); }
Slot WithDigit(Slot s, uint8_t digit) { return (s & ~kDigitMask) | (Slot{digit} << kDigitShift); }
bool SameNode(Slot a, Slot b) { return ((a ^ b) & ~kDigitMask) == 0; }

Slot LeafSlot(Leaf* leaf, uint8_t digit) {
  auto p = reinterpret_cast<uintptr_t>(leaf);
  assert((p & ~kPtrMask) == 0);
  return p | kLeafBit | (Slot{digit} << kDigitShift);
}
Slot InnerSlot(Inner* inner, uint8_t digit) {
  auto p = reinterpret_cast<uintptr_t>(inner);
  assert((p & ~kPtrMask) == 0);
  return p | (Slot{digit} << kDigitShift);
}

const Hash128& HashOf(Slot s) { return IsLeaf(s) ? AsLeaf(s)->hash : AsInner(s)->hash; }
std::atomic<uint32_t>& RefsOf(Slot s) { return IsLeaf(s) ? AsLeaf(s)->refs : AsInner(s)->refs; }

// Leaves and small inner nodes come from node_slabs (no chunk header, no
// malloc call); larger inner nodes from malloc. A node's size, and so where it
// came from, follows from its key size or its capacity.
void* AllocateNode(size_t bytes) {
  if (bytes <= node_slabs::kMaxBytes) return node_slabs::Allocate(bytes);
  void* p = std::malloc(bytes);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void FreeNode(void* p, size_t bytes) {
  if (bytes <= node_slabs::kMaxBytes) {
    node_slabs::Free(p, bytes);
  } else {
    std::free(p);
  }
}

size_t LeafBytes(size_t key_size) {
  bool long_key = key_size >= Leaf::kLongKey;
  return sizeof(Leaf) + (long_key ? sizeof(uint32_t) : 0) + key_size;
}

Leaf* NewLeaf(FamilyTag family, std::string_view key, const Hash128& hash) {
  bool long_key = key.size() >= Leaf::kLongKey;
  size_t prefix = long_key ? sizeof(uint32_t) : 0;
  auto* leaf = static_cast<Leaf*>(AllocateNode(LeafBytes(key.size())));
  new (&leaf->refs) std::atomic<uint32_t>(1);
  leaf->family = family;
  leaf->short_size = long_key ? Leaf::kLongKey : static_cast<uint16_t>(key.size());
  leaf->hash = hash;
  char* bytes = reinterpret_cast<char*>(leaf + 1);
  if (long_key) {
    uint32_t size = static_cast<uint32_t>(key.size());
    std::memcpy(bytes, &size, sizeof(size));
  }
  if (!key.empty()) std::memcpy(bytes + prefix, key.data(), key.size());
  return leaf;
}

void FreeLeaf(Leaf* leaf) { FreeNode(leaf, LeafBytes(leaf->key().size())); }

size_t InnerBytes(int capacity) { return sizeof(Inner) + sizeof(Slot) * capacity; }

// Allocates an inner node with room for at least `capacity` children: a slab
// block holds exactly that many; a malloc chunk may hold more, and the node
// uses what it holds (glibc), up to kMaxChildren.
Inner* AllocateInner(int capacity) {
  const size_t bytes = InnerBytes(capacity);
  void* p = AllocateNode(bytes);
  auto* inner = static_cast<Inner*>(p);
  int fits = capacity;
#if defined(__GLIBC__)
  if (bytes > node_slabs::kMaxBytes) {
    fits = static_cast<int>((malloc_usable_size(p) - sizeof(Inner)) / sizeof(Slot));
  }
#endif
  inner->capacity_minus_one = static_cast<uint8_t>(std::min(fits, kMaxChildren) - 1);
  return inner;
}

void FreeInner(Inner* inner) { FreeNode(inner, InnerBytes(inner->capacity())); }

Inner* NewInner(int depth, int capacity) {
  Inner* inner = AllocateInner(capacity);
  new (&inner->refs) std::atomic<uint32_t>(1);
  inner->depth = static_cast<uint8_t>(depth);
  inner->count = 0;
  inner->hash = Hash128{};
  return inner;
}

// Capacity to grow or shrink to for `count` children: a little slack so that
// a run of inserts does not reallocate every time.
int CapacityFor(int count) { return std::min(kMaxChildren, count + count / 8 + 2); }

void Ref(Slot s) {
  if (s != 0) RefsOf(s).fetch_add(1, std::memory_order_relaxed);
}

void Unref(Slot s);

void Destroy(Slot s) {
  if (IsLeaf(s)) {
    FreeLeaf(AsLeaf(s));
    return;
  }
  Inner* inner = AsInner(s);
  for (int i = 0; i < inner->count; ++i) Unref(inner->slots()[i]);
  FreeInner(inner);
}

void Unref(Slot s) {
  if (s == 0) return;
  std::atomic<uint32_t>& refs = RefsOf(s);
  // A count of 1 is ours alone: nobody else can raise it, so skip the RMW.
  if (refs.load(std::memory_order_acquire) == 1 ||
      refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    Destroy(s);
  }
}

// Position of the first child whose digit is >= digit.
//
// Digits are bytes of a hash, so a node's children are spread evenly over
// 0..255: the search starts where an even spread puts `digit` and looks at
// the cache line beside it first, and only then bisects the rest. A node of
// a few hundred children is 2 KB, where plain bisection touched a cache line
// per step; this is most of what an insert into a large tree costs.
int LowerBound(const Inner* inner, uint8_t digit) {
  const int count = inner->count;
  if (count == kMaxChildren) return digit;
  const Slot* begin = inner->slots();
  const Slot* end = begin + count;
  const Slot target = Slot{digit} << kDigitShift;
  constexpr int kSmall = 16;  // bisection stays within two cache lines
  constexpr int kWindow = 8;  // slots in a cache line
  if (count <= kSmall) return static_cast<int>(std::lower_bound(begin, end, target) - begin);
  const Slot* guess = begin + digit * count / kMaxChildren;
  const Slot* lo;
  const Slot* hi;
  if (*guess < target) {  // the answer is after the guess
    lo = guess + 1;
    hi = std::min(end, lo + kWindow);
    if (hi < end && *(hi - 1) < target) {
      lo = hi;
      hi = end;
    }
  } else {  // at the guess or before it
    hi = guess;
    lo = std::max(begin, hi - kWindow);
    if (lo > begin && *lo >= target) {
      hi = lo;
      lo = begin;
    }
  }
  return static_cast<int>(std::lower_bound(lo, hi, target) - begin);
}

// The child slot for `digit`, or nullptr.
const Slot* FindChildSlot(const Inner* inner, uint8_t digit) {
  int pos = LowerBound(inner, digit);
  if (pos < inner->count && DigitOf(inner->slots()[pos]) == digit) return &inner->slots()[pos];
  return nullptr;
}

bool LeafMatches(const Leaf* leaf, FamilyTag family, std::string_view key) {
  return leaf->family == family && leaf->key() == key;
}

const Leaf* AnyLeaf(Slot s) {
  while (!IsLeaf(s)) s = AsInner(s)->slots()[0];
  return AsLeaf(s);
}

Hash128 AnyKeyHash(Slot s, KeyHasher hasher) {
  const Leaf* leaf = AnyLeaf(s);
  return hasher(leaf->family, leaf->key());
}

// Makes the inner node in *slot exclusively ours, copying it if a view shares it.
Inner* MakeExclusive(Slot* slot) {
  Inner* node = AsInner(*slot);
  if (node->refs.load(std::memory_order_acquire) == 1) return node;
  Inner* copy = NewInner(node->depth, node->capacity());
  copy->count = node->count;
  copy->hash = node->hash;
  std::memcpy(copy->slots(), node->slots(), sizeof(Slot) * node->count);
  for (int i = 0; i < node->count; ++i) Ref(node->slots()[i]);
  *slot = InnerSlot(copy, DigitOf(*slot));
  Unref(InnerSlot(node, 0));
  return copy;
}

// Resizes an exclusive inner node held in *slot to `capacity`.
Inner* Resize(Slot* slot, Inner* node, int capacity) {
  Inner* resized = NewInner(node->depth, capacity);
  resized->count = node->count;
  resized->hash = node->hash;
  std::memcpy(resized->slots(), node->slots(), sizeof(Slot) * node->count);
  FreeInner(node);
  *slot = InnerSlot(resized, DigitOf(*slot));
  return resized;
}

// An inner node at `depth` holding two subtrees whose digits there differ.
Slot MakePair(int depth, Slot a, uint8_t digit_a, Slot b, uint8_t digit_b, uint8_t own_digit) {
  Inner* n = NewInner(depth, 2);
  a = WithDigit(a, digit_a);
  b = WithDigit(b, digit_b);
  n->slots()[0] = digit_a < digit_b ? a : b;
  n->slots()[1] = digit_a < digit_b ? b : a;
  n->count = 2;
  n->hash = HashOf(a) ^ HashOf(b);
  return InnerSlot(n, own_digit);
}

void ForEachLeaf(Slot s, const std::function<void(const Leaf*)>& fn) {
  if (s == 0) return;
  if (IsLeaf(s)) {
    fn(AsLeaf(s));
    return;
  }
  const Inner* inner = AsInner(s);
  for (int i = 0; i < inner->count; ++i) ForEachLeaf(inner->slots()[i], fn);
}

// Recursive comparison of two subtrees that hang at the same trie position.
class Differ {
 public:
  Differ(KeyHasher hasher, std::vector<DiffEntry>* out) : hasher_(hasher), out_(out) {}

  // a and b hang at the same position: their keys agree on digits [0, depth).
  void Compare(Slot a, Slot b, int depth) {
    if (SameNode(a, b)) return;
    if (a == 0) return EmitAll(b, DiffKind::kOnlyInB);
    if (b == 0) return EmitAll(a, DiffKind::kOnlyInA);
    if (HashOf(a) == HashOf(b)) return;
    if (IsLeaf(a) && IsLeaf(b)) {
      const Leaf* la = AsLeaf(a);
      const Leaf* lb = AsLeaf(b);
      if (la->family == lb->family && la->key() == lb->key()) {
        return Emit(la, DiffKind::kValueDiffers);
      }
      // Emit in key-hash order.
      Hash128 ka = hasher_(la->family, la->key());
      Hash128 kb = hasher_(lb->family, lb->key());
      if (ka.hi < kb.hi || (ka.hi == kb.hi && ka.lo < kb.lo)) {
        Emit(la, DiffKind::kOnlyInA);
        Emit(lb, DiffKind::kOnlyInB);
      } else {
        Emit(lb, DiffKind::kOnlyInB);
        Emit(la, DiffKind::kOnlyInA);
      }
      return;
    }
    int da = IsLeaf(a) ? kHashDigits : AsInner(a)->depth;
    int db = IsLeaf(b) ? kHashDigits : AsInner(b)->depth;
    int at = std::min(da, db);
    if (at > depth) {
      // Digits [depth, at) are skipped by a collapsed chain or a leaf on at
      // least one side; where they differ, the two key sets are disjoint.
      Hash128 pa = AnyKeyHash(a, hasher_);
      Hash128 pb = AnyKeyHash(b, hasher_);
      int split = FirstDifferingDigit(pa, pb, depth);
      if (split < at) {
        bool a_first = pa.digit(split) < pb.digit(split);
        EmitAll(a_first ? a : b, a_first ? DiffKind::kOnlyInA : DiffKind::kOnlyInB);
        EmitAll(a_first ? b : a, a_first ? DiffKind::kOnlyInB : DiffKind::kOnlyInA);
        return;
      }
    }
    Children ca = Expand(a, da, at);
    Children cb = Expand(b, db, at);
    size_t i = 0, j = 0;
    while (i < ca.count || j < cb.count) {
      if (i + 8 < ca.count) __builtin_prefetch(reinterpret_cast<void*>(ca.slots[i + 8] & kPtrMask));
      if (j + 8 < cb.count) __builtin_prefetch(reinterpret_cast<void*>(cb.slots[j + 8] & kPtrMask));
      int dig_a = i < ca.count ? DigitOf(ca.slots[i]) : kMaxChildren;
      int dig_b = j < cb.count ? DigitOf(cb.slots[j]) : kMaxChildren;
      if (dig_a == dig_b) {
        Compare(ca.slots[i++], cb.slots[j++], at + 1);
      } else if (dig_a < dig_b) {
        Compare(ca.slots[i++], 0, at + 1);
      } else {
        Compare(0, cb.slots[j++], at + 1);
      }
    }
  }

 private:
  struct Children {
    const Slot* slots;
    size_t count;
    Slot single;  // storage when a node stands as its own only child
  };

  // The children of `s` at depth `at`: its real children if it branches there,
  // otherwise itself, under the digit that all its keys share at `at`.
  Children Expand(Slot s, int own_depth, int at) {
    Children c{nullptr, 0, 0};
    if (own_depth == at) {
      const Inner* inner = AsInner(s);
      c.slots = inner->slots();
      c.count = inner->count;
      return c;
    }
    c.single = WithDigit(s, AnyKeyHash(s, hasher_).digit(at));
    c.slots = &c.single;
    c.count = 1;
    return c;
  }

  void Emit(const Leaf* leaf, DiffKind kind) {
    out_->push_back(DiffEntry{leaf->family, std::string(leaf->key()), kind});
  }
  void EmitAll(Slot s, DiffKind kind) {
    ForEachLeaf(s, [&](const Leaf* leaf) { Emit(leaf, kind); });
  }

  KeyHasher hasher_;
  std::vector<DiffEntry>* out_;
};

}  // namespace

// ---- NodeRef ----

bool NodeRef::is_leaf() const { return IsLeaf(slot_); }
Hash128 NodeRef::hash() const { return empty() ? Hash128{} : HashOf(slot_); }
void NodeRef::Prefetch() const {
  __builtin_prefetch(reinterpret_cast<const void*>(slot_ & kPtrMask));
}
int NodeRef::depth() const { return AsInner(slot_)->depth; }
int NodeRef::child_count() const { return AsInner(slot_)->count; }
uint8_t NodeRef::child_digit(int i) const { return DigitOf(AsInner(slot_)->slots()[i]); }
NodeRef NodeRef::child(int i) const { return NodeRef(AsInner(slot_)->slots()[i], hasher_); }
NodeRef NodeRef::FindChild(uint8_t digit) const {
  const Slot* child = FindChildSlot(AsInner(slot_), digit);
  return child == nullptr ? NodeRef() : NodeRef(*child, hasher_);
}
FamilyTag NodeRef::family() const { return AsLeaf(slot_)->family; }
std::string_view NodeRef::key() const { return AsLeaf(slot_)->key(); }
Hash128 NodeRef::key_hash() const { return hasher_(family(), key()); }
Hash128 NodeRef::AnyKeyHash() const { return sdiff::AnyKeyHash(slot_, hasher_); }

// ---- TreeView ----

TreeView::TreeView(const TreeView& other)
    : root_(other.root_), size_(other.size_), hasher_(other.hasher_) {
  Ref(root_);
}

TreeView::TreeView(TreeView&& other) noexcept
    : root_(other.root_), size_(other.size_), hasher_(other.hasher_) {
  other.root_ = 0;
  other.size_ = 0;
}

TreeView& TreeView::operator=(const TreeView& other) {
  if (this != &other) {
    Ref(other.root_);
    Unref(root_);
    root_ = other.root_;
    size_ = other.size_;
    hasher_ = other.hasher_;
  }
  return *this;
}

TreeView& TreeView::operator=(TreeView&& other) noexcept {
  if (this != &other) {
    Unref(root_);
    root_ = other.root_;
    size_ = other.size_;
    hasher_ = other.hasher_;
    other.root_ = 0;
    other.size_ = 0;
  }
  return *this;
}

TreeView::~TreeView() { Unref(root_); }

Hash128 TreeView::root_hash() const { return root_ == 0 ? Hash128{} : HashOf(root_); }

std::optional<Hash128> TreeView::Find(FamilyTag family, std::string_view key) const {
  Slot s = root_;
  if (s == 0) return std::nullopt;
  if (!IsLeaf(s)) {
    Hash128 kh = hasher_(family, key);
    do {
      const Slot* child = FindChildSlot(AsInner(s), kh.digit(AsInner(s)->depth));
      if (child == nullptr) return std::nullopt;
      s = *child;
    } while (!IsLeaf(s));
  }
  const Leaf* leaf = AsLeaf(s);
  if (!LeafMatches(leaf, family, key)) return std::nullopt;
  return leaf->hash;
}

void TreeView::ForEach(
    const std::function<void(FamilyTag, std::string_view, const Hash128&)>& fn) const {
  ForEachLeaf(root_, [&](const Leaf* leaf) { fn(leaf->family, leaf->key(), leaf->hash); });
}

void TreeView::PrefetchPaths(std::span<const Hash128> key_hashes) const {
  if (root_ == 0 || IsLeaf(root_)) return;
  // Each pass advances every unfinished path by half a level: first it reads
  // a node's header (loaded by the pass before) and prefetches the slots where
  // the key's digit should be; the next pass finds the child there and
  // prefetches the child's header and first slots.
  constexpr size_t kMaxKeys = 64;
  struct Path {
    Slot node;
    bool slots_loaded;
  };
  for (size_t begin = 0; begin < key_hashes.size(); begin += kMaxKeys) {
    const size_t count = std::min(kMaxKeys, key_hashes.size() - begin);
    const Hash128* hashes = key_hashes.data() + begin;
    Path paths[kMaxKeys];
    for (size_t i = 0; i < count; ++i) paths[i] = Path{root_, true};
    for (size_t active = count; active > 0;) {
      active = 0;
      for (size_t i = 0; i < count; ++i) {
        Path& path = paths[i];
        if (path.node == 0 || IsLeaf(path.node)) continue;
        ++active;
        const Inner* inner = AsInner(path.node);
        const uint8_t digit = hashes[i].digit(inner->depth);
        if (!path.slots_loaded) {
          const int n = inner->count;
          const Slot* guess =
              inner->slots() + (n == kMaxChildren ? digit : digit * n / kMaxChildren);
          __builtin_prefetch(guess);
          path.slots_loaded = true;
          continue;
        }
        const Slot* child = FindChildSlot(inner, digit);
        path.node = child == nullptr ? 0 : *child;
        path.slots_loaded = false;
        if (path.node != 0) {
          const char* p = reinterpret_cast<const char*>(path.node & kPtrMask);
          __builtin_prefetch(p);
          __builtin_prefetch(p + 64);
        }
      }
    }
  }
}

std::vector<DiffEntry> Diff(const TreeView& a, const TreeView& b) {
  assert(a.hasher() == b.hasher());
  std::vector<DiffEntry> out;
  Differ(a.hasher(), &out).Compare(a.root_, b.root_, 0);
  return out;
}

// ---- MerkleTree ----

Status MerkleTree::Put(FamilyTag family, std::string_view key, std::string_view value) {
  Hash128 key_hash = hasher_(family, key);
  return Insert(family, key, key_hash, LeafHash(key_hash, value));
}

Status MerkleTree::PutLeafHash(FamilyTag family, std::string_view key, const Hash128& leaf_hash) {
  return Insert(family, key, hasher_(family, key), leaf_hash);
}

Status MerkleTree::Insert(FamilyTag family, std::string_view key, const Hash128& key_hash,
                          const Hash128& leaf_hash) {
  Inner* path[kHashDigits + 1];
  int path_len = 0;
  Slot* slot = &root_;
  int depth = 0;  // the first digit the path so far has not fixed
  for (;;) {
    Slot s = *slot;
    if (s == 0) {  // only the root slot is ever empty
      *slot = LeafSlot(NewLeaf(family, key, leaf_hash), 0);
      break;
    }
    if (IsLeaf(s)) {
      Leaf* leaf = AsLeaf(s);
      if (LeafMatches(leaf, family, key)) {
        if (leaf->hash == leaf_hash) return Status::OK();
        Hash128 delta = leaf->hash ^ leaf_hash;
        if (leaf->refs.load(std::memory_order_acquire) == 1) {
          leaf->hash = leaf_hash;
        } else {
          *slot = LeafSlot(NewLeaf(family, key, leaf_hash), DigitOf(s));
          Unref(s);
        }
        for (int i = 0; i < path_len; ++i) path[i]->hash ^= delta;
        return Status::OK();
      }
      Hash128 other = hasher_(leaf->family, leaf->key());
      int at = FirstDifferingDigit(key_hash, other, depth);
      if (at == kHashDigits) {  // a collision: the least key stays in the trie
        if (std::make_pair(family, key) > std::make_pair(leaf->family, leaf->key())) {
          aside_.insert_or_assign(std::make_pair(family, std::string(key)), leaf_hash);
          return Status::OK();
        }
        aside_.emplace(std::make_pair(leaf->family, std::string(leaf->key())), leaf->hash);
        Hash128 delta = leaf->hash ^ leaf_hash;
        *slot = LeafSlot(NewLeaf(family, key, leaf_hash), DigitOf(s));
        Unref(s);
        for (int i = 0; i < path_len; ++i) path[i]->hash ^= delta;
        return Status::OK();
      }
      Slot fresh = LeafSlot(NewLeaf(family, key, leaf_hash), 0);
      *slot = MakePair(at, s, other.digit(at), fresh, key_hash.digit(at), DigitOf(s));
      break;
    }
    Inner* node = AsInner(s);
    if (node->depth > depth) {
      // A collapsed chain: every key below shares digits [depth, node->depth).
      Hash128 other = AnyKeyHash(s, hasher_);
      int at = FirstDifferingDigit(key_hash, other, depth);
      if (at < node->depth) {
        Slot fresh = LeafSlot(NewLeaf(family, key, leaf_hash), 0);
        *slot = MakePair(at, s, other.digit(at), fresh, key_hash.digit(at), DigitOf(s));
        break;
      }
    }
    node = MakeExclusive(slot);
    path[path_len++] = node;
    uint8_t digit = key_hash.digit(node->depth);
    int pos = LowerBound(node, digit);
    if (pos < node->count && DigitOf(node->slots()[pos]) == digit) {
      slot = &node->slots()[pos];
      depth = node->depth + 1;
      continue;
    }
    if (node->count == node->capacity()) {
      node = Resize(slot, node, CapacityFor(node->count + 1));
      path[path_len - 1] = node;
    }
    Slot* slots = node->slots();
    std::memmove(slots + pos + 1, slots + pos, sizeof(Slot) * (node->count - pos));
    slots[pos] = LeafSlot(NewLeaf(family, key, leaf_hash), digit);
    ++node->count;
    break;
  }
  ++size_;
  for (int i = 0; i < path_len; ++i) path[i]->hash ^= leaf_hash;
  return Status::OK();
}

bool MerkleTree::Erase(FamilyTag family, std::string_view key) {
  if (!Find(family, key)) {  // so that an absent key copies nothing
    if (aside_.empty()) return false;
    auto it = aside_.find(std::make_pair(family, std::string(key)));
    if (it == aside_.end()) return false;
    aside_.erase(it);
    return true;
  }
  Hash128 key_hash = hasher_(family, key);
  Hash128 removed;
  EraseAt(&root_, key_hash, &removed);
  --size_;
  if (!aside_.empty()) PromoteAside(key_hash);
  return true;
}

// Linear in the keys aside, which only colliding keys are: none in practice.
void MerkleTree::PromoteAside(const Hash128& key_hash) {
  for (auto it = aside_.begin(); it != aside_.end(); ++it) {
    if (hasher_(it->first.first, it->first.second) == key_hash) {
      auto [family, key] = it->first;
      Hash128 leaf_hash = it->second;
      aside_.erase(it);
      Insert(family, key, key_hash, leaf_hash);
      return;
    }
  }
}

void MerkleTree::EraseRange(FamilyTag family, std::string_view begin, std::string_view end) {
  // Aside first, so that erasing a trie key promotes none that is in range.
  if (!aside_.empty() && begin < end) {
    aside_.erase(aside_.lower_bound(std::make_pair(family, std::string(begin))),
                 aside_.lower_bound(std::make_pair(family, std::string(end))));
  }
  std::vector<std::string> covered;
  ForEach([&](FamilyTag f, std::string_view key, const Hash128&) {
    if (f == family && key >= begin && key < end) covered.emplace_back(key);
  });
  for (const std::string& key : covered) Erase(family, key);
}

// Removes the leaf for key_hash, known to be present, below *slot. Leaves *slot
// empty if it held that leaf, and collapses a node left with a single child.
void MerkleTree::EraseAt(uint64_t* slot, const Hash128& key_hash, Hash128* removed) {
  Slot s = *slot;
  if (IsLeaf(s)) {
    *removed = AsLeaf(s)->hash;
    *slot = 0;
    Unref(s);
    return;
  }
  Inner* node = MakeExclusive(slot);
  int pos = LowerBound(node, key_hash.digit(node->depth));
  Slot* child = &node->slots()[pos];
  EraseAt(child, key_hash, removed);
  node->hash ^= *removed;
  if (*child != 0) return;
  Slot* slots = node->slots();
  std::memmove(slots + pos, slots + pos + 1, sizeof(Slot) * (node->count - pos - 1));
  --node->count;
  if (node->count == 1) {
    *slot = WithDigit(slots[0], DigitOf(*slot));
    FreeInner(node);
  } else if (node->capacity() > 4 && node->count <= node->capacity() / 2) {
    Resize(slot, node, CapacityFor(node->count));
  }
}

void MerkleTree::Clear() {
  Unref(root_);
  root_ = 0;
  size_ = 0;
  aside_.clear();
}

}  // namespace sdiff
