// FakeAuthenticator: a stand-in for the HMAC that net/ provides, for the
// sans-I/O session tests: deterministic, different for different secrets,
// short enough for the wire's proof limit. Not cryptography.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "engine/authenticator.h"

namespace sdiff::testing {

class FakeAuthenticator : public Authenticator {
 public:
  explicit FakeAuthenticator(std::string secret) : secret_(std::move(secret)) {}
  std::string Sign(std::string_view message) const override {
    return "mac:" + std::to_string(std::hash<std::string>{}(secret_ + '\n' + std::string(message)));
  }
  bool Verify(std::string_view message, std::string_view mac) const override {
    return Sign(message) == mac;
  }

 private:
  std::string secret_;
};

}  // namespace sdiff::testing
