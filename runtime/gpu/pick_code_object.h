// An AMD device's target ID ("gfx90a:sramecc+:xnack-"): where the HIP runtime reports it, and which of a
// job's code objects it picks (a HIP job names one code object per arch; the device's processor, the
// part of its target ID before the first ':', picks one).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "dsl/core/result.h"

namespace tetra::gpu {

// The value of `code_objects` (arch, "gfx942", to a code object's file) for `device_arch`; a Failure names
// the device's arch and the archs offered when none matches.
dsl::Result<std::string> pick_code_object(const std::map<std::string, std::string>& code_objects,
                                          const std::string& device_arch);

// hipDeviceProp_t begins with the device's name in this many bytes, in every ROCm layout.
constexpr size_t kDevicePropertiesNameBytes = 256;

// The device's target ID in a hipDeviceProp_t of any layout (ROCm 5's or 6's, which put gcnArchName at
// different offsets): the first NUL-terminated target ID past the name; "" if there is none. The other
// fields hold numbers and raw bytes, not a "gfx" string.
std::string target_id_in_properties(const std::vector<char>& properties);

// "gfx942" or "gfx90a:sramecc+:xnack-": "gfx" and the processor's digits and letters, then ":feature+"
// or ":feature-" for each feature the device reports.
bool is_target_id(const std::string& s);

}  // namespace tetra::gpu
