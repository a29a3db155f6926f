#!/usr/bin/env node
// Runs the compiled CLI (dist/, from `npm run build`, which `prepare` runs on install) when it is newer than every
// source file, for a start-up without compiling; otherwise the TypeScript CLI through tsx, so a git checkout works
// without a build step and an edited source is never shadowed by a stale build. DOSVOB_FROM_SOURCE=1 forces tsx.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const SOURCE_DIRS = ['client', 'common', 'workflows', 'activities', 'worker'];

/** The newest mtime of the .ts (and agent .py) sources, or 0 when they are not there (a package without them). */
function newestSource(dir) {
  let newest = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (/\.(ts|py)$/.test(e.name)) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

function compiledIsCurrent() {
  if (process.env.DOSVOB_FROM_SOURCE === '1') return false;
  let built;
  try {
    built = fs.statSync(path.join(root, 'dist', '.build-stamp')).mtimeMs;
  } catch {
    return false;
  }
  return SOURCE_DIRS.every((d) => newestSource(path.join(root, d)) <= built);
}

let main;
if (compiledIsCurrent()) main = require('../dist/client/main.js').main;
else {
  require('tsx/cjs');
  main = require('../client/main.ts').main;
}
main().then((code) => {
  process.exitCode = code;
});
