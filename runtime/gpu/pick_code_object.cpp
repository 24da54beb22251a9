#include "runtime/gpu/pick_code_object.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace tetra::gpu {

dsl::Result<std::string> pick_code_object(const std::map<std::string, std::string>& code_objects,
                                          const std::string& device_arch) {
  const std::string processor = device_arch.substr(0, device_arch.find(':'));
  auto it = code_objects.find(processor);
  if (it != code_objects.end()) return it->second;
  std::string offered;
  for (const auto& [arch, file] : code_objects) offered += (offered.empty() ? "" : ", ") + arch;
  return dsl::Failure{dsl::FailureKind::Unsupported, device_arch,
                      "no code object for the device's arch " + processor + " (the job offers " +
                          (offered.empty() ? "none" : offered) + ")"};
}

bool is_target_id(const std::string& s) {
  size_t colon = s.find(':');
  std::string processor = s.substr(0, colon);
  if (processor.size() < 4 || processor.compare(0, 3, "gfx") != 0 ||
      !std::all_of(processor.begin() + 3, processor.end(), [](char c) { return std::isalnum((unsigned char)c); }))
    return false;
  while (colon != std::string::npos) {
    size_t next = s.find(':', colon + 1);
    std::string feature = s.substr(colon + 1, next == std::string::npos ? std::string::npos : next - colon - 1);
    if (feature.size() < 2 || (feature.back() != '+' && feature.back() != '-') ||
        !std::all_of(feature.begin(), feature.end() - 1, [](char c) { return std::isalnum((unsigned char)c); }))
      return false;
    colon = next;
  }
  return true;
}

std::string target_id_in_properties(const std::vector<char>& props) {
  for (size_t at = kDevicePropertiesNameBytes; at + 4 < props.size(); ++at) {
    if (std::memcmp(props.data() + at, "gfx", 3) != 0) continue;
    const char* end = static_cast<const char*>(std::memchr(props.data() + at, '\0', props.size() - at));
    if (!end) break;
    std::string s(props.data() + at, end);
    if (is_target_id(s)) return s;
  }
  return "";
}

}  // namespace tetra::gpu
