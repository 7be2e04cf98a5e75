// Hand-built messages of every type, with edge values, shared by the wire tests
// and the fuzzer's seed corpus.
#pragma once

#include <string>
#include <vector>

#include "engine/messages.h"

namespace sdiff::wire {

// At least one message of each type; several where a type has distinct shapes
// (an empty and a full Batch, summaries in the list and in the bitmap form).
std::vector<Message> SampleMessages();

// A well-formed inner summary with `count` children spread over 0..255 and
// hashes fitting `hash_bytes`.
NodeSummary SampleInner(int count, int hash_bytes);

// The whole frame (length prefix included) for `m`.
std::string FrameOf(const Message& m);

}  // namespace sdiff::wire
