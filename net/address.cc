// Parsing of HOST:PORT.
#include "net/address.h"

#include <charconv>

namespace sdiff::net {

Status ParseHostPort(const std::string& address, std::string* host, uint16_t* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return Status::InvalidArgument("address '" + address + "' is not HOST:PORT");
  }
  std::string h = address.substr(0, colon);
  if (h.front() == '[') {
    if (h.back() != ']') return Status::InvalidArgument("address '" + address + "': unclosed [");
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return Status::InvalidArgument("address '" + address + "': write IPv6 hosts as [HOST]:PORT");
  }
  unsigned value = 0;
  const char* begin = address.data() + colon + 1;
  const char* end = address.data() + address.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end || value > 65535) {
    return Status::InvalidArgument("address '" + address + "': port must be 0..65535");
  }
  *host = h;
  *port = static_cast<uint16_t>(value);
  return Status::OK();
}

}  // namespace sdiff::net
