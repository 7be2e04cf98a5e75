// Output from a ServerSession whose database answers at once: what tests and
// in-memory benchmarks take from a session, serving its database requests
// (engine/master_hooks.h) on the spot, as a driver with instant hooks would.
#pragma once

#include <cstddef>
#include <string>

#include "engine/server_session.h"

namespace sdiff::testing {

// Serves what the session asked for, then takes its output, serving each
// request it makes on the way, until about `budget` bytes are out (a frame
// more at most): what one TakeOutput gave when sessions read inline. Any
// request left at the end is served, so wants_write() tells what is ready.
inline std::string TakeOutputServingDb(ServerSession& session, const MasterHooks& hooks,
                                       size_t budget) {
  ServeDbRequestsNow(session, hooks);
  std::string out = session.TakeOutput();
  while (ServeDbRequestsNow(session, hooks) && out.size() < budget) out += session.TakeOutput();
  return out;
}

}  // namespace sdiff::testing
