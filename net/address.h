// HOST:PORT addresses as the tools and options spell them.
#pragma once

#include <cstdint>
#include <string>

#include "engine/status.h"

namespace sdiff::net {

// Splits "host:port" or "[v6-host]:port"; the port must be 0..65535.
Status ParseHostPort(const std::string& address, std::string* host, uint16_t* port);

}  // namespace sdiff::net
