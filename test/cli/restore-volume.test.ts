// `dosvob restore VOLUME --to-volume NAME` through the real CLI: a restore run followed to its end with the live
// display, `--detach` with `status` and `runs` seeing the restore run, and a wrong token refused before any run.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Status } from '../../client/commands/status';
import type { RestoreVolumeOutcome } from '../../client/commands/restore-volume';
import type { RunSummary } from '../../client/runs';
import { startHarness, type Harness } from '../support/harness';
import { sameSparseBytes } from '../support/sparse';
import { copyOfVolume, ext4Volume } from '../workflow/restore-support';
import { cli, cliEnv, parseJson, waitFor } from './support';

describe('dosvob restore --to-volume', () => {
  let h: Harness;
  let env: Record<string, string>;
  let expected: string;

  before(async () => {
    h = await startHarness();
    env = cliEnv(h);
    const id = await ext4Volume(h, 'data');
    expected = await copyOfVolume(h, id);
    await h.run({ include: ['data'] });
  });
  after(async () => h?.close());

  it('restores onto a new volume, following the run with its steps, and says what it made', async () => {
    const r = await cli(['restore', 'data', '--to-volume', 'data-cli'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^started restore run /m);
    assert.match(r.stdout, /data-cli .*transfer/, 'the display showed the writing step');
    assert.match(r.stdout, /restored data version \S+ .* to the new volume data-cli in nyc3, verified, detached/);
    const target = h.sim.liveResources().volumes.find((v) => v.name === 'data-cli');
    assert.ok(target, 'the volume exists');
    assert.ok(await sameSparseBytes(target.file, expected), 'byte-exact');
  });

  it('--detach returns at once; status and runs know the restore run', async () => {
    const r = await cli(['restore', 'data', '--to-volume', 'data-detached', '--detach', '--json'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const started = parseJson<RestoreVolumeOutcome>(r);
    assert.equal(started.result, undefined, 'not followed');
    const s = await cli(['status', '--json'], env);
    const status = parseJson<Status>(s);
    if (status.running) assert.equal(status.kind, 'restore');
    await h.client.workflow.getHandle(started.workflowId, started.runId).result();
    const runs = await waitFor('the restore run in the list', async () => {
      const listed = parseJson<RunSummary[]>(await cli(['runs', '--json'], env));
      return listed.find((x) => x.runId === started.runId && x.outcome === 'ok') ? listed : undefined;
    });
    const mine = runs.find((x) => x.runId === started.runId);
    assert.equal(mine?.kind, 'restore');
    assert.match(mine?.message ?? '', /to the new volume data-detached/);
  });

  it('is refused while a backup run holds the run slot, naming the run', async () => {
    const release = h.sim.holdTransitions(); // the backup's droplet stays "new": the run stays in progress
    const backup = await h.start({ include: ['data'] }, env.DOSVOB_WORKFLOW_ID);
    try {
      await waitFor('the backup to create its droplet', async () =>
        h.sim.liveResources().droplets.some((d) => d.tags.includes('dosvob-ephemeral')),
      );
      const r = await cli(['restore', 'data', '--to-volume', 'data-busy'], env);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`a backup run is in progress \\(${backup.firstExecutionRunId}\\)`));
    } finally {
      release();
    }
    await backup.result();
    assert.ok(!h.sim.liveResources().volumes.some((v) => v.name === 'data-busy'), 'nothing restored');
  });

  it('a wrong token: one line, exit 2, no run and nothing created', async () => {
    const conf = path.join(h.backupsDir, 'bad-token.json');
    writeFileSync(conf, JSON.stringify({ do_token: 'dop_v1_wrong', api_url: h.config.apiUrl, regions: ['nyc3'] }));
    const before = h.sim.creationCounts();
    const r = await cli(['restore', 'data', '--to-volume', 'data-token'], { ...env, DOSVOB_CONFIG: conf });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /token/i);
    assert.doesNotMatch(r.stdout, /started restore run/);
    assert.deepEqual(h.sim.creationCounts(), before);
  });

  it('--to and --to-volume together, or neither, is refused', async () => {
    for (const args of [
      ['restore', 'data'],
      ['restore', 'data', '--to', '/tmp/x.img', '--to-volume', 'y'],
    ]) {
      const r = await cli(args, env);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /--to-volume NAME .* or --to FILE/);
    }
  });
});
