// `dosvob prune` and `dosvob versions protect|unprotect` through the CLI (workflows whose activity runs on the store
// worker), and pruning at the end of a successful backup run, reported in the run's result.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PruneOutcomeCli } from '../../client/commands/prune';
import type { SetProtectedResult } from '../../activities/retention/types';
import { keepSchema } from '../../common/retention-config';
import { startHarness, type Harness } from '../support/harness';
import { randomData } from '../support/bytes';
import { startDroplet, tempDir, type Droplet } from '../transfer/helpers.js';
import { cli, cliEnv, parseJson } from '../cli/support';
import { treeState, twelveSyncs, versionIds } from './support';

describe('dosvob prune, dosvob versions protect', () => {
  let h: Harness;
  let env: Record<string, string>;
  let ids: string[];
  let work: Awaited<ReturnType<typeof tempDir>>;

  before(async () => {
    // The timeline's store is made before the workers start (the syncs set the clock to the timeline's times).
    const d: Droplet = await startDroplet();
    work = await tempDir('dosvob-retention-cli-');
    try {
      const made = await twelveSyncs(d, join(work.dir, 'tl'), 31);
      ids = made.ids;
      h = await startHarness({ config: { retention: keepSchema.parse({ last: 2, monthly: 2 }) } });
      execFileSync('cp', ['-a', `${made.v.backups}/.`, h.backupsDir]);
    } finally {
      await d.close();
    }
    env = cliEnv(h);
  });
  after(async () => {
    await h?.close();
    await work?.cleanup();
  });

  it('protects a version by a prefix of its id, and unprotects it', async () => {
    const r = await cli(['versions', 'protect', 'vol1', ids[2]!.slice(0, 17), '--json'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(parseJson<SetProtectedResult>(r), {
      key: 'vol1',
      versionId: ids[2],
      protected: true,
      unchanged: false,
    });
    const again = await cli(['versions', 'protect', 'vol1', ids[2]!], env);
    assert.match(again.stdout, /already protected/);
    const missing = await cli(['versions', 'protect', 'vol1', '19990101T000000Z-000000'], env);
    assert.equal(missing.code, 2, 'bad input');
    assert.match(missing.stderr, /vol1 has no version 19990101T000000Z-000000/);
    const nobody = await cli(['versions', 'unprotect', 'nosuchvolume', ids[2]!], env);
    assert.equal(nobody.code, 2);
    assert.match(nobody.stderr, /no backups of a volume nosuchvolume/);
  });

  it('--dry-run lists the rule keeping each version and changes no file; then prune removes just those', async () => {
    const beforeState = await treeState(h.backupsDir);
    const dry = await cli(['prune', '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.deepEqual(await treeState(h.backupsDir), beforeState, 'nothing changed');
    const line = (k: number) => dry.stdout.split('\n').find((l) => l.includes(ids[k - 1]!)) ?? '';
    assert.match(dry.stdout, /^retention: last 2, monthly 2 \(dry run: nothing is changed\)$/m);
    assert.match(dry.stdout, /^vol1: keeps 4, would remove 8$/m);
    assert.match(line(12), /2026-11-30 Mon 04:00 {2}keep {4}last 1, monthly 2026-11, newest$/);
    assert.match(line(11), /keep {4}last 2$/);
    assert.match(line(4), /keep {4}monthly 2026-10$/);
    assert.match(line(3), /keep {4}protected$/);
    for (const k of [1, 2, 5, 6, 7, 8, 9, 10]) assert.match(line(k), /remove$/, `sync ${k}`);
    assert.match(dry.stdout, /^garbage collection: would remove \d+ of \d+ chunks/m);

    const real = await cli(['prune', '--json'], env);
    assert.equal(real.code, 0, real.stdout + real.stderr);
    const out = parseJson<PruneOutcomeCli>(real);
    assert.equal(out.report.versionsRemoved, 8);
    assert.deepEqual(
      await versionIds(h.backupsDir),
      [3, 4, 11, 12].map((k) => ids[k - 1]!),
    );
    assert.ok(out.report.gc && !out.report.gc.dryRun);

    const un = await cli(['versions', 'unprotect', 'vol1', ids[2]!], env);
    assert.equal(un.code, 0, un.stdout + un.stderr);
    assert.match(un.stdout, /not protected/);
  });

  it('a successful backup run prunes, and its result says what was removed', async () => {
    const vol = await h.sim.createVolume({ name: 'data', region: 'nyc3', sizeGigabytes: 1 });
    const made: string[] = [];
    for (let k = 0; k < 3; k++) {
      await h.sim.writeVolume(vol.id, k * (1 << 20), randomData(1 << 20));
      const result = await h.run();
      assert.ok(result.pruning?.ok, JSON.stringify(result.pruning));
      const now = await versionIds(h.backupsDir, 'data');
      made.push(now[now.length - 1]!);
      // last 2 keeps the two newest; monthly 2 has one month so far, and its slot left keeps the oldest.
      assert.deepEqual(
        result.pruning.removed.filter((r) => r.key === 'data'),
        [],
      );
    }
    assert.deepEqual(await versionIds(h.backupsDir, 'data'), made);
    await h.sim.writeVolume(vol.id, 5 << 20, randomData(1 << 20));
    const fourth = await h.run();
    assert.deepEqual(fourth.pruning?.removed, [{ key: 'data', versionIds: [made[1]] }]);
    assert.match(fourth.message, /1 of 1 volumes backed up; pruned 1 old version\(s\), freed /);
    assert.equal((await versionIds(h.backupsDir, 'data')).length, 3);
  });
});
