// Measuring a tuning candidate on a GPU (`tetra tune --target opencl`): the worker lowers the
// candidate's kernels and emits them in the target's dialect, then writes a device job
// (tools/device_main.cpp) with fresh random inputs and the reference at sampled outputs, and hands it to
// tetra-device, a process of its own because pocl's LLVM and libHalide's cannot share one. tetra-device
// checks the output and times the runs; its verdict is the result.
#pragma once
#include <string>

#include "dsl/target.h"
#include "tuner/measure.h"

namespace tetra::tuner {

// `job` (a GPU target's candidate; job.device_program names tetra-device) measured on the device.
// `fault` (tests): "wrong" corrupts one expected output, so the device's check must fail the candidate;
// "device-hang" makes an OpenCL candidate's kernels spin forever on the device.
MeasureResult measure_on_device(const MeasureJob& job, const dsl::TargetSpec& target, const std::string& fault = "");

}  // namespace tetra::tuner
