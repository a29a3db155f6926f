#!/usr/bin/env node
// `npm run build` and `prepare` (an npm script, not an installed command): compile to dist/ with tsc, copy the files
// the code reads at run time, and stamp the build, so bin/dosvob.js can tell a dist/ newer than every source.
// With --if-possible (prepare), a missing TypeScript (an install without dev dependencies) or a failed build skips
// it: the command then runs from source through tsx, as before. (package.json's prepare also skips when this file
// is not there yet: the Dockerfile installs from package.json alone.) --out-dir DIR builds elsewhere (the build's own test).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const outIndex = process.argv.indexOf('--out-dir');
const dist = outIndex > 0 ? path.resolve(process.argv[outIndex + 1] ?? 'dist') : path.join(root, 'dist');
/** Read at run time next to the code that reads them (agent.ts: __dirname; paths.ts: PROJECT_ROOT/scripts). */
const ASSETS = ['activities/transfer/agent.py', 'scripts/ensure-temporal-cli.sh'];

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  if (process.argv.includes('--if-possible')) {
    console.error('dosvob: TypeScript is not installed; skipping the build (dosvob runs from source through tsx)');
    process.exit(0);
  }
  console.error('dosvob: TypeScript is not installed: npm install --include=dev');
  process.exit(1);
}
// Sources changed while tsc runs must leave the build stale: the stamp takes the time the build started.
const started = new Date();
const stamp = path.join(dist, '.build-stamp');
fs.rmSync(stamp, { force: true });
const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', dist], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) {
  // An install must not fail for a type error in a work in progress: without a stamp, dosvob runs from source.
  if (process.argv.includes('--if-possible')) {
    console.error('dosvob: the build failed; dosvob runs from source through tsx');
    process.exit(0);
  }
  process.exit(result.status ?? 1);
}
for (const asset of ASSETS) {
  const to = path.join(dist, asset);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(path.join(root, asset), to);
  fs.chmodSync(to, fs.statSync(path.join(root, asset)).mode);
}
fs.writeFileSync(stamp, `${started.toISOString()}\n`);
fs.utimesSync(stamp, started, started);
