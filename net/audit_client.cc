// AuditMaster: an AuditSession pumped by RunClientSession.
#include "net/audit_client.h"

#include <memory>

#include "engine/audit_session.h"
#include "net/hmac_authenticator.h"
#include "net/secure_random.h"

namespace sdiff::net {
namespace {

class AuditProtocol : public ClientProtocol {
 public:
  explicit AuditProtocol(const Authenticator* authenticator)
      : session_(AuditorOptions{.authenticator = authenticator},
                 AuditorHooks{.random_bytes = SecureRandomBytes}) {}

  void Start() override { session_.Start(); }
  void OnBytes(std::string_view bytes) override { session_.OnBytes(bytes); }
  void OnTick(int64_t now_ms) override { session_.OnTick(now_ms); }
  std::string TakeOutput() override { return session_.TakeOutput(); }
  bool finished() const override { return session_.done() || session_.closed(); }
  Status error() const override { return session_.error(); }

  const AuditSession& session() const { return session_; }

 private:
  AuditSession session_;
};

}  // namespace

Status AuditMaster(const AuditClientOptions& options, AuditReport* report) {
  *report = AuditReport{};
  std::unique_ptr<HmacAuthenticator> authenticator;
  if (!options.secret.empty()) authenticator = std::make_unique<HmacAuthenticator>(options.secret);
  AuditProtocol protocol(authenticator.get());
  Status s = RunClientSession(options.connect, &protocol, options.secret);
  if (!s.ok()) return s;
  *report = *protocol.session().report();
  if (!report->error.empty()) {
    return Status::Aborted("the master's self-audit failed: " + report->error);
  }
  return Status::OK();
}

}  // namespace sdiff::net
