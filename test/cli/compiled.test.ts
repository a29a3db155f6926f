// The compiled build (bin/build.js, `npm run build` and `prepare`): its `dosvob --help` works through bin/dosvob.js,
// which picks it only while no source is newer; its worker bundles the workflows from the compiled files. Built into
// a directory of the test's own, laid out like an installed package, so the checkout's dist/ is left alone.
// (Start-up times are in the README's "Scale and pace", not asserted here.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bundleWorkflowCode } from '@temporalio/worker';
import { REPO } from './support';

describe('the compiled build', () => {
  const pkg = mkdtempSync(path.join(tmpdir(), 'dosvob-compiled-'));
  const bin = path.join(pkg, 'bin', 'dosvob.js');
  const run = (args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      cwd: pkg,
      timeout: 60_000,
    });

  before(() => {
    const built = spawnSync(
      process.execPath,
      [path.join(REPO, 'bin', 'build.js'), '--out-dir', path.join(pkg, 'dist')],
      {
        encoding: 'utf8',
        timeout: 300_000,
      },
    );
    assert.equal(built.status, 0, `the build failed:\n${built.stdout}\n${built.stderr}`);
    mkdirSync(path.join(pkg, 'bin'));
    copyFileSync(path.join(REPO, 'bin', 'dosvob.js'), bin);
    symlinkSync(path.join(REPO, 'node_modules'), path.join(pkg, 'node_modules'));
  });
  after(() => rmSync(pkg, { recursive: true, force: true }));

  it('dosvob --help runs from dist/ (the package has no sources to fall back to)', () => {
    const r = run(['--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Usage: dosvob/m);
    for (const command of ['sync', 'status', 'restore', 'worker'])
      assert.match(r.stdout, new RegExp(`^  ${command}\\b`, 'm'));
    const sub = run(['images', '--help']);
    assert.equal(sub.status, 0, sub.stderr);
    assert.match(sub.stdout, /--verify/);
  });

  it('a source newer than the build sends bin/dosvob.js back to the sources (here: none to run)', () => {
    mkdirSync(path.join(pkg, 'client'));
    writeFileSync(path.join(pkg, 'client', 'edited.ts'), 'export {};\n');
    try {
      const r = run(['--help']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /client\/main\.ts/, 'it tried the TypeScript entry point');
    } finally {
      rmSync(path.join(pkg, 'client'), { recursive: true, force: true });
    }
    assert.equal(run(['--help']).status, 0, 'and dist/ again once the sources are older');
  });

  it('the worker bundles the workflows from the compiled files', async () => {
    const bundle = await bundleWorkflowCode({
      workflowsPath: path.join(pkg, 'dist', 'workflows'),
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
    });
    assert.match(bundle.code, /backupWorkflow/);
    assert.match(bundle.code, /restoreWorkflow|cleanupWorkflow/);
  });
});
