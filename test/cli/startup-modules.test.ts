// What the quick commands load. Start-up time is a benchmark's business (README "Scale and pace"), but what makes it
// is which modules a command pulls in: `dosvob --help` none of Temporal, `dosvob status` against a cluster only
// Temporal's client — not the worker, the activities, ssh2, the DigitalOcean client or the config schema (zod).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { uniqueId } from '../support/temporal';
import { BIN, REPO } from './support';

const HEAVY = ['@temporalio/worker', 'ssh2', 'dots-wrapper', 'zod', '@temporalio/core-bridge'];

/** Runs `dosvob ARGS` as a process and returns its exit code, output and the packages it loaded. */
function loadedBy(
  args: string[],
  env: Record<string, string>,
  dir: string,
): Promise<{ code: number; stdout: string; packages: Set<string> }> {
  const list = path.join(dir, `${uniqueId('modules')}.json`);
  const preload = path.join(dir, 'record-modules.js');
  writeFileSync(
    preload,
    `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(require.cache))));\n`,
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--require', preload, BIN, ...args],
      // From source: the test needs no build, and the compiled CLI requires the same modules.
      { cwd: REPO, env: { ...process.env, ...env, DOSVOB_FROM_SOURCE: '1' }, timeout: 120_000 },
      (err, stdout) => {
        const files = JSON.parse(readFileSync(list, 'utf8')) as string[];
        const packages = new Set(
          files.flatMap((f) => {
            const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f);
            return m?.[1] ? [m[1]] : [];
          }),
        );
        resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, packages });
      },
    );
  });
}

describe('what the quick commands load', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dosvob-startup-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--help loads nothing of Temporal', async () => {
    const r = await loadedBy(['--help'], {}, dir);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: dosvob/);
    for (const p of ['@temporalio/client', ...HEAVY]) assert.ok(!r.packages.has(p), `--help loaded ${p}`);
  });

  it("status against a cluster loads Temporal's client and nothing heavier", async () => {
    const address = process.env.TEMPORAL_ADDRESS;
    assert.ok(address, 'the suite runs a Temporal server');
    const r = await loadedBy(
      ['status'],
      {
        TEMPORAL_ADDRESS: address,
        DOSVOB_WORKFLOW_ID: uniqueId('dosvob-backup'),
        DOSVOB_TASK_QUEUE: uniqueId('q'),
        DOSVOB_CONFIG: path.join(dir, 'absent-conf.json'),
      },
      dir,
    );
    assert.equal(r.code, 0, r.stdout);
    assert.match(r.stdout, /no backup run is in progress/);
    assert.ok(r.packages.has('@temporalio/client'), 'the check sees what it loads');
    for (const p of HEAVY) assert.ok(!r.packages.has(p), `status loaded ${p}`);
  });
});
