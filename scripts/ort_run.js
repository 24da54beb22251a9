#!/usr/bin/env node
// Runs an ONNX model with ONNX Runtime (node), the independent oracle for tetra's tests.
//   node scripts/ort_run.js MODEL DIR OUTDIR [--optimize]
// Reads DIR/input_<i>.pb (TensorProto), binds them by position to the session's inputs, runs, and
// writes OUTDIR/output_<i>.pb in the session's output order. Without --optimize graph optimisations
// are disabled: with them ORT fuses DequantizeLinear+MatMul into MatMulNBits with int8 activations,
// which is ~1e-2 off exact fp32.
// The protobuf wire format is decoded by hand so that the script needs nothing but onnxruntime-node.
'use strict';
const fs = require('fs');
const path = require('path');

function die(message) {
  process.stderr.write(`ort_run: error: ${message}\n`);
  process.exit(1);
}

// ONNX TensorProto.DataType -> [ORT type name, typed array constructor].
const TYPES = {
  1: ['float32', Float32Array],
  2: ['uint8', Uint8Array],
  3: ['int8', Int8Array],
  6: ['int32', Int32Array],
  7: ['int64', BigInt64Array],
  9: ['bool', Uint8Array],
  10: ['float16', Uint16Array],
  11: ['float64', Float64Array],
};
const ONNX_TYPE_OF = Object.fromEntries(Object.entries(TYPES).map(([code, [name]]) => [name, Number(code)]));

// ---- protobuf decoding ----------------------------------------------------------------------

class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  done() { return this.pos >= this.buf.length; }
  varint() {  // as BigInt: int64 values may use all 64 bits
    let result = 0n, shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return BigInt.asIntN(64, result);
      shift += 7n;
      if (shift > 63n) throw new Error('varint too long');
    }
  }
  bytes(n) {
    if (this.pos + n > this.buf.length) throw new Error('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.bytes(8);
    else if (wire === 2) this.bytes(Number(this.varint()));
    else if (wire === 5) this.bytes(4);
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

// Reads a repeated varint field that may be packed (wire 2) or not (wire 0).
function readVarints(r, wire, out) {
  if (wire === 0) { out.push(r.varint()); return; }
  const sub = new Reader(r.bytes(Number(r.varint())));
  while (!sub.done()) out.push(sub.varint());
}

function readFloats(r, wire, out) {
  const bytes = wire === 5 ? r.bytes(4) : r.bytes(Number(r.varint()));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i + 4 <= bytes.length; i += 4) out.push(view.getFloat32(i, true));
}

function decodeTensorProto(buf) {
  const r = new Reader(buf);
  const t = { dims: [], dataType: 0, name: '', raw: null, floats: [], int32s: [], int64s: [] };
  while (!r.done()) {
    const key = Number(r.varint());
    const field = key >>> 3, wire = key & 7;
    if (field === 1) readVarints(r, wire, t.dims);
    else if (field === 2 && wire === 0) t.dataType = Number(r.varint());
    else if (field === 4) readFloats(r, wire, t.floats);
    else if (field === 5) readVarints(r, wire, t.int32s);
    else if (field === 7) readVarints(r, wire, t.int64s);
    else if (field === 8 && wire === 2) t.name = r.bytes(Number(r.varint())).toString('utf8');
    else if (field === 9 && wire === 2) t.raw = r.bytes(Number(r.varint()));
    else if (field === 14 && wire === 0 && Number(r.varint()) === 1) throw new Error('external data is not supported');
    else r.skip(wire);
  }
  return t;
}

// Builds the ORT tensor for a decoded TensorProto.
function toOrtTensor(ort, t, what) {
  const entry = TYPES[t.dataType];
  if (!entry) throw new Error(`${what}: unsupported data_type ${t.dataType}`);
  const [typeName, Ctor] = entry;
  const dims = t.dims.map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  let data;
  if (t.raw) {
    if (t.raw.length !== count * Ctor.BYTES_PER_ELEMENT) {
      throw new Error(`${what}: raw_data has ${t.raw.length} bytes, expected ${count * Ctor.BYTES_PER_ELEMENT}`);
    }
    data = new Ctor(count);  // a fresh aligned copy
    new Uint8Array(data.buffer).set(t.raw);
  } else {
    // Typed fields: float_data for float32, int64_data for int64, int32_data for the rest
    // (float16 as its uint16 bit pattern).
    const source = typeName === 'float32' ? t.floats : typeName === 'int64' ? t.int64s : t.int32s;
    if (source.length !== count) throw new Error(`${what}: has ${source.length} values, expected ${count}`);
    data = new Ctor(count);
    for (let i = 0; i < count; i++) {
      data[i] = typeName === 'int64' ? BigInt(source[i]) : typeName === 'float32' ? source[i] : Number(source[i]);
    }
  }
  return new ort.Tensor(typeName, data, dims);
}

// ---- protobuf encoding ----------------------------------------------------------------------

function varintBytes(value) {
  let v = BigInt.asUintN(64, BigInt(value));
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}

function encodeTensorProto(tensor, name) {
  const code = ONNX_TYPE_OF[tensor.type];
  if (!code) throw new Error(`output '${name}' has unsupported type ${tensor.type}`);
  const data = tensor.data;
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const nameBytes = Buffer.from(name, 'utf8');
  const parts = [];
  for (const d of tensor.dims) parts.push(varintBytes(1 << 3 | 0), varintBytes(d));
  parts.push(varintBytes(2 << 3 | 0), varintBytes(code));
  parts.push(varintBytes(8 << 3 | 2), varintBytes(nameBytes.length), nameBytes);
  parts.push(varintBytes(9 << 3 | 2), varintBytes(raw.length), raw);
  return Buffer.concat(parts);
}

// ---- main -----------------------------------------------------------------------------------

function loadOrt() {
  const where = path.join(__dirname, '..', 'node_modules', 'onnxruntime-node');
  try {
    return require(where);
  } catch (e) {
    die(`cannot load onnxruntime-node from ${where} (run 'npm install --ignore-scripts onnxruntime-node@1.30.0' ` +
        `in the repository root): ${e.message}`);
  }
}

async function main() {
  const args = process.argv.slice(2);
  const optimize = args.includes('--optimize');
  const positional = args.filter((a) => a !== '--optimize');
  if (positional.length !== 3 || positional.some((a) => a.startsWith('--'))) {
    die('usage: node scripts/ort_run.js MODEL DIR OUTDIR [--optimize]');
  }
  const [modelPath, inDir, outDir] = positional;
  if (!fs.existsSync(modelPath)) die(`model '${modelPath}' does not exist`);
  if (!fs.existsSync(outDir)) die(`output folder '${outDir}' does not exist`);
  const ort = loadOrt();

  let session;
  try {
    session = await ort.InferenceSession.create(modelPath, {
      graphOptimizationLevel: optimize ? 'all' : 'disabled',
      intraOpNumThreads: 1,
    });
  } catch (e) {
    die(`ONNX Runtime rejected '${modelPath}': ${e.message}`);
  }

  const feeds = {};
  session.inputNames.forEach((name, i) => {
    const file = path.join(inDir, `input_${i}.pb`);
    if (!fs.existsSync(file)) die(`model input ${i} ('${name}') has no file ${file}`);
    try {
      feeds[name] = toOrtTensor(ort, decodeTensorProto(fs.readFileSync(file)), file);
    } catch (e) {
      die(`${file}: ${e.message}`);
    }
  });
  const extra = path.join(inDir, `input_${session.inputNames.length}.pb`);
  if (fs.existsSync(extra)) die(`${extra}: the model has only ${session.inputNames.length} inputs`);

  let results;
  try {
    results = await session.run(feeds);
  } catch (e) {
    die(`ONNX Runtime failed to run '${modelPath}': ${e.message}`);
  }
  session.outputNames.forEach((name, i) => {
    fs.writeFileSync(path.join(outDir, `output_${i}.pb`), encodeTensorProto(results[name], name));
  });
}

if (require.main === module) main().catch((e) => die(e.stack || String(e)));

module.exports = { decodeTensorProto, toOrtTensor, loadOrt };
