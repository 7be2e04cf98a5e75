// The library's Status lives in the public headers (include/sdiff/status.h);
// this name stays so the internal code keeps including "engine/status.h".
#pragma once

#include "sdiff/status.h"  // IWYU pragma: export
