// Which of a job's AMD code objects runs on a device: a HIP job names one code object per arch, and the
// device's target ID ("gfx90a:sramecc+:xnack-") picks one by its processor, the part before the first ':'.
#pragma once
#include <map>
#include <string>

#include "dsl/core/result.h"

namespace tetra::gpu {

// The value of `code_objects` (arch, "gfx942", to a code object's file) for `device_arch`; a Failure names
// the device's arch and the archs offered when none matches.
dsl::Result<std::string> pick_code_object(const std::map<std::string, std::string>& code_objects,
                                          const std::string& device_arch);

}  // namespace tetra::gpu
