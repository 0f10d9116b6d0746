// Runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU): the external runtime qat's ONNX
// export is checked against (tests/test_onnx.c) and benchmarked against (bench/onnx_peer.sh).
//
//   node ort_run.js MODEL.onnx IN.f32 N C H W OUT.f32 [--threads T] [--bench SECONDS --batch B]
//
// IN.f32: N*C*H*W float32 (the model's "pixels", NCHW); OUT.f32 gets N*classes float32 logits.
// Batches of --batch images (default all N at once). With --bench, runs batches of B images
// repeatedly for SECONDS after a warm-up and prints one JSON line {"img_s": ..., "ms_batch": ...}.
// ONNX Runtime is looked up in $QAT_ORT_DIR (default ~/.cache/qat/onnxruntime-node, where
// scripts/deps.sh installs it); exit 3 with a line saying how to install it when it is missing.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const dir = process.env.QAT_ORT_DIR || path.join(os.homedir(), '.cache/qat/onnxruntime-node');
let ort;
try {
  ort = require(path.join(dir, 'node_modules/onnxruntime-node'));
} catch (e) {
  console.error(`ort_run: ONNX Runtime (onnxruntime-node) not found in ${dir}: run 'sh scripts/deps.sh' ` +
                `(or: mkdir -p ${dir} && cd ${dir} && ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30)`);
  process.exit(3);
}

function die(msg) { console.error('ort_run: ' + msg); process.exit(2); }

async function main() {
  const a = process.argv.slice(2);
  const opt = {threads: 1, bench: 0, batch: 0};
  const pos = [];
  for (let i = 0; i < a.length; i++) {
    if (a[i] === '--threads') opt.threads = +a[++i];
    else if (a[i] === '--bench') opt.bench = +a[++i];
    else if (a[i] === '--batch') opt.batch = +a[++i];
    else pos.push(a[i]);
  }
  if (pos.length !== 7) die('usage: node ort_run.js MODEL.onnx IN.f32 N C H W OUT.f32 [--threads T] [--bench S --batch B]');
  const [model, inPath, N, C, H, W, outPath] = [pos[0], pos[1], +pos[2], +pos[3], +pos[4], +pos[5], pos[6]];
  const per = C * H * W;
  const buf = fs.readFileSync(inPath);
  if (buf.length !== N * per * 4) die(`${inPath}: ${buf.length} bytes, expected ${N * per * 4}`);
  const x = new Float32Array(buf.buffer, buf.byteOffset, N * per);
  const sess = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all',
    intraOpNumThreads: opt.threads, interOpNumThreads: 1,
  });
  const B = opt.batch > 0 ? Math.min(opt.batch, N) : N;
  const run = async (start, n) => {
    const t = new ort.Tensor('float32', x.subarray(start * per, (start + n) * per), [n, C, H, W]);
    const r = await sess.run({pixels: t});
    return r.logits.data;
  };
  if (opt.bench > 0) {
    for (let i = 0; i < 3; i++) await run(0, B);
    let iters = 0;
    const t0 = process.hrtime.bigint();
    let t;
    do {
      await run(0, B);
      iters++;
      t = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (t < opt.bench);
    console.log(JSON.stringify({img_s: iters * B / t, ms_batch: 1000 * t / iters, batch: B, iters}));
    return;
  }
  const chunks = [];
  for (let s = 0; s < N; s += B) chunks.push(Float32Array.from(await run(s, Math.min(B, N - s))));
  const classes = chunks[0].length / Math.min(B, N);
  const out = new Float32Array(N * classes);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  fs.writeFileSync(outPath, Buffer.from(out.buffer));
}

main().catch(e => die(String(e && e.message ? e.message : e)));
