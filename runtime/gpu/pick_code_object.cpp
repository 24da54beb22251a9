#include "runtime/gpu/pick_code_object.h"

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

}  // namespace tetra::gpu
