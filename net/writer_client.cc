// WriteThroughMaster: a WriterSession pumped by RunClientSession, keeping up
// to max_in_flight writes in the pipe.
#include "net/writer_client.h"

#include <deque>
#include <memory>

#include "engine/writer_session.h"
#include "net/hmac_authenticator.h"
#include "net/secure_random.h"

namespace sdiff::net {
namespace {

class WriterProtocol : public ClientProtocol {
 public:
  WriterProtocol(const WriterClientOptions& options, const Authenticator* authenticator,
                 const NextWrite& next, WriteSummary* summary)
      : max_in_flight_(std::max<size_t>(options.max_in_flight, 1)),
        next_(next),
        summary_(summary),
        session_(WriterOptions{.authenticator = authenticator},
                 WriterHooks{.random_bytes = SecureRandomBytes}) {}

  void Start() override { session_.Start(); }
  void OnBytes(std::string_view bytes) override {
    session_.OnBytes(bytes);
    Pump();
  }
  void OnTick(int64_t now_ms) override {
    session_.OnTick(now_ms);
    Pump();
  }
  std::string TakeOutput() override { return session_.TakeOutput(); }
  bool finished() const override { return done_ || session_.closed(); }
  Status error() const override {
    if (!error_.ok()) return error_;
    return done_ ? Status::OK() : session_.error();
  }

 private:
  // Counts the acks, sends more writes while there are any, and closes when
  // nothing is in flight. After an error no write is sent, but the ones in
  // flight are waited for: the master commits them (unless an earlier one
  // failed), and the summary must count what was committed.
  void Pump() {
    while (auto ack = session_.PollAck()) {
      size_t ops = op_counts_.front();
      op_counts_.pop_front();
      if (!ack->error.empty() && ack->seq != 0) {
        // Committed at ack->seq, but too few followers applied it in time:
        // the master goes on with later writes, and so do we.
        if (summary_->unreplicated++ == 0) summary_->unreplicated_error = ack->error;
      } else if (!ack->error.empty()) {
        Stop(Status::IOError("the master refused write " + std::to_string(ack->id) + ": " +
                             ack->error));
        continue;
      }
      ++summary_->writes;
      summary_->ops += ops;
      summary_->last_seq = std::max(summary_->last_seq, ack->seq);
    }
    if (!session_.ready() || done_) return;
    while (more_ && session_.in_flight() < max_in_flight_) {
      std::vector<Op> ops;
      Status s = next_(session_.families(), &ops, &more_);
      if (!s.ok()) {
        Stop(s);
        break;
      }
      if (ops.empty()) continue;
      op_counts_.push_back(ops.size());
      session_.Submit(std::move(ops));
    }
    if (!more_ && session_.in_flight() == 0) {
      done_ = true;
      session_.Close(error_.ok() ? "writes done" : "writer stopping");
    }
  }

  // Keeps the first error; sends nothing more.
  void Stop(Status why) {
    if (error_.ok()) error_ = std::move(why);
    more_ = false;
  }

  size_t max_in_flight_;
  const NextWrite& next_;
  WriteSummary* summary_;
  WriterSession session_;
  std::deque<size_t> op_counts_;  // ops in each write in flight
  bool more_ = true;
  bool done_ = false;
  Status error_;
};

}  // namespace

Status WriteThroughMaster(const WriterClientOptions& options, const NextWrite& next,
                          WriteSummary* summary) {
  *summary = WriteSummary{};
  std::unique_ptr<HmacAuthenticator> authenticator;
  if (!options.secret.empty()) authenticator = std::make_unique<HmacAuthenticator>(options.secret);
  WriterProtocol protocol(options, authenticator.get(), next, summary);
  return RunClientSession(options.connect, &protocol, options.secret);
}

}  // namespace sdiff::net
