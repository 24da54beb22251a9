#!/usr/bin/env node
// Times a model with ONNX Runtime (node), tetra's speed peer in bench/run.sh.
//   node bench/ort_bench.js MODEL DATA_DIR [--threads 2] [--repeat 20]
// Full graph optimisations (ORT's default), DATA_DIR/input_<i>.pb as inputs; prints one JSON line
// with median_ms / min_ms / max_ms after two warm-up runs, and, when DATA_DIR holds output_0.pb,
// max_abs_error against it and expected_max_abs (as `tetra bench --json` does).
'use strict';
const fs = require('fs');
const path = require('path');
const { decodeTensorProto, toOrtTensor, loadOrt } = require('../scripts/ort_run.js');

function option(args, name, fallback) {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

async function main() {
  const args = process.argv.slice(2);
  const [modelPath, dataDir] = args;
  const threads = option(args, '--threads', 2);
  const repeat = option(args, '--repeat', 20);
  const ort = loadOrt();
  const session = await ort.InferenceSession.create(modelPath, {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  });
  const feeds = {};
  session.inputNames.forEach((name, i) => {
    const file = path.join(dataDir, `input_${i}.pb`);
    feeds[name] = toOrtTensor(ort, decodeTensorProto(fs.readFileSync(file)), file);
  });
  let outputs;
  for (let i = 0; i < 2; ++i) outputs = await session.run(feeds);
  const times = [];
  for (let i = 0; i < repeat; ++i) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const report = { median_ms: times[times.length >> 1], min_ms: times[0], max_ms: times[times.length - 1] };
  const expectedFile = path.join(dataDir, 'output_0.pb');
  if (fs.existsSync(expectedFile)) {
    const expected = toOrtTensor(ort, decodeTensorProto(fs.readFileSync(expectedFile)), expectedFile).data;
    const got = outputs[session.outputNames[0]].data;
    let maxError = 0, maxExpected = 0;
    for (let i = 0; i < got.length; ++i) {
      maxError = Math.max(maxError, Math.abs(got[i] - expected[i]));
      maxExpected = Math.max(maxExpected, Math.abs(expected[i]));
    }
    report.max_abs_error = maxError;
    report.expected_max_abs = maxExpected;
  }
  console.log(JSON.stringify(report));
}

main().catch((e) => {
  process.stderr.write(`ort_bench: error: ${e.message}\n`);
  process.exit(1);
});
