// In-memory joining of a master and a follower session.
#include "engine/testing/link.h"

#include <algorithm>

namespace sdiff::testing {

Link::Link(MemoryMaster* master, MemoryFollower* follower, std::mt19937_64* rng,
           LinkOptions options)
    : master_(master), window_bytes_(options.window_bytes) {
  ServerOptions server_options = options.server;
  ServerOptions defaults = master->Options();
  server_options.master_id = defaults.master_id;
  server_options.families = defaults.families;
  hooks_ = master->Hooks(rng);
  server_ = std::make_unique<ServerSession>(server_options, hooks_);
  FollowerHooks follower_hooks = follower->Hooks(rng);
  // What a repair must carry whatever the protocol: the key and value of each
  // put it applies. A delete of a key only the follower had counts nothing
  // (the follower already holds its key), so the diff's overhead (all bytes
  // but these) is never understated.
  follower_hooks.write = [this, write = std::move(follower_hooks.write)](const ApplyRequest& r) {
    Status s = write(r);
    if (s.ok() && r.source == ApplyRequest::Source::kRepair) {
      for (const Op& op : r.ops) {
        if (op.kind == OpKind::kPut) stats_.repair_payload_bytes += op.key.size() + op.value.size();
      }
    }
    return s;
  };
  client_ =
      std::make_unique<ClientSession>(options.client, std::move(follower_hooks), follower->state());
}

void Link::Start() {
  client_->Start();
  Pump();
}

void Link::OnMasterBatch(const Batch& batch) {
  server_->OnBatch(batch);
  Pump();
}

void Link::RequestSyncFromFollower() {
  client_->RequestSync();
  Pump();
}

void Link::RequestSyncFromMaster() {
  server_->RequestSync();
  Pump();
}

void Link::Tick(int64_t now_ms) {
  server_->OnTick(now_ms);
  client_->OnTick(now_ms);
  Pump();
}

size_t Link::DeliverToFollower(size_t max_bytes) {
  size_t n = std::min(max_bytes, to_follower_.size());
  if (n == 0) return 0;
  std::string chunk = to_follower_.substr(0, n);
  to_follower_.erase(0, n);
  client_->OnBytes(chunk);
  Pump();
  return n;
}

size_t Link::DeliverToMaster(size_t max_bytes) {
  size_t n = std::min(max_bytes, to_master_.size());
  if (n == 0) return 0;
  std::string chunk = to_master_.substr(0, n);
  to_master_.erase(0, n);
  server_->OnBytes(chunk);
  Pump();
  return n;
}

bool Link::RunUntilQuiet(int max_rounds) {
  for (int i = 0; i < max_rounds; ++i) {
    Pump();
    if (closed()) return true;
    size_t moved = DeliverToFollower(to_follower_.size()) + DeliverToMaster(to_master_.size());
    if (moved == 0 && !server_->wants_write() && !client_->wants_write()) return true;
  }
  return false;
}

bool Link::quiescent() const {
  return !closed() && server_->streaming() && client_->streaming() && server_->idle() &&
         client_->idle() && to_follower_.empty() && to_master_.empty();
}

// Does what the embedding code must after every call into a session.
void Link::Pump() {
  bool progress = true;
  while (progress) {
    progress = false;
    while (auto event = server_->PollEvent()) {
      progress = true;
      switch (event->kind) {
        case ServerEvent::Kind::kStreamFrom:
          for (const Batch* batch : master_->LogFrom(event->seq)) server_->OnBatch(*batch);
          break;
        case ServerEvent::Kind::kWantSnapshot:
          server_->StartSync(master_->tree().Snapshot());
          break;
        case ServerEvent::Kind::kSyncDone:
          ++(event->complete ? stats_.syncs : stats_.retries);
          stats_.round_trips += event->round_trips;
          stats_.repaired += event->repaired;
          break;
        case ServerEvent::Kind::kRunAudit:  // a link joins a follower, never an auditor
        case ServerEvent::Kind::kWaitAcks:  // ... nor a writer
        case ServerEvent::Kind::kClosed:
          break;
      }
    }
    progress = ServeDbRequestsNow(*server_, hooks_) || progress;
    while (auto event = client_->PollEvent()) {
      progress = true;
      if (event->kind != ClientEvent::Kind::kWelcome) continue;
      ++(event->mode == StartMode::kResume ? stats_.resumes
         : event->mode == StartMode::kDiff ? stats_.diffs
                                           : stats_.bootstraps);
    }
    if (to_follower_.size() < window_bytes_ && server_->wants_write()) {
      std::string out = server_->TakeOutput();
      bytes_to_follower_ += out.size();
      to_follower_ += out;
      progress = progress || !out.empty();
    }
    std::string out = client_->TakeOutput();
    bytes_to_master_ += out.size();
    to_master_ += out;
  }
}

}  // namespace sdiff::testing
