#!/usr/bin/env node
// Times a model with ONNX Runtime (node), tetra's speed peer in bench/run.sh.
//   node bench/ort_bench.js MODEL DATA_DIR [--threads 2] [--repeat 20]
// Full graph optimisations (ORT's default), DATA_DIR/input_<i>.pb as inputs; prints one JSON line
// with median_ms / min_ms / max_ms after two warm-up runs.
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
  for (let i = 0; i < 2; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < repeat; ++i) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ median_ms: times[times.length >> 1], min_ms: times[0], max_ms: times[times.length - 1] }));
}

main().catch((e) => {
  process.stderr.write(`ort_bench: error: ${e.message}\n`);
  process.exit(1);
});
