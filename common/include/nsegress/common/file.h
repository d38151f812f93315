#pragma once

#include <string>

#include "nsegress/common/result.h"

namespace nsegress {

// Writes `content` to `path` atomically (temp file, fsync, rename), so a
// reader never sees a half-written file.
Status writeFileAtomically(const std::string& path, const std::string& content);

}  // namespace nsegress
