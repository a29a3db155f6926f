// Retention applied to a real store: a volume synced 12 times at the times of a synthetic timeline, pruned by a
// policy: exactly the expected versions remain, for the expected reasons, and each restores byte-exact; protected
// versions, older lineages and busy stores are left alone; a dry run changes no file; garbage collection removes
// exactly the chunks no kept version needs.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ConfigError, loadConfig } from '../../common/config';
import { keepSchema } from '../../common/retention-config';
import { StoreLock, listChunks, listVersions, setProtected, storePaths } from '../../activities/store/index.js';
import {
  collectGarbage,
  createRetentionActivities,
  pruneStore,
  type PruneReport,
} from '../../activities/retention/index';
import { pruneLines } from '../../client/commands/prune';
import { TWELVE_SYNCS_KEEP, TWELVE_SYNCS_KEPT } from '../support/retention-timeline';
import { dropletFixture } from '../transfer/helpers.js';
import { BLOCK, TestVolume, assertChunksSound, rng } from '../store/support.js';
import { ageChunks, forget, neededChunks, syncAt, treeState, twelveSyncs, versionIds } from './support';

const fx = dropletFixture('dosvob-retention-');

const POLICY = keepSchema.parse(TWELVE_SYNCS_KEEP);
const KEPT_SYNCS = Object.keys(TWELVE_SYNCS_KEPT)
  .map(Number)
  .sort((a, b) => a - b);

async function writeConf(path: string, extra: Record<string, unknown>): Promise<string> {
  await writeFile(path, JSON.stringify({ region: 'nyc3', ...extra }));
  return path;
}

void describe('pruning a real store', { concurrency: false }, () => {
  void test('12 syncs over the timeline: exactly the expected versions remain, for their rules, each byte-exact', async () => {
    const { v, ids } = await twelveSyncs(fx.d, fx.dir(), 1);
    const r = await pruneStore(v.backups, 'vol1', POLICY);
    const expected = KEPT_SYNCS.map((k) => ids[k - 1]!);
    assert.deepEqual(await versionIds(v.backups), expected, 'the versions left on disk');
    assert.deepEqual(
      [...r.removed].sort(),
      [3, 5, 7, 8].map((k) => ids[k - 1]!),
    );
    for (const [k, reasons] of Object.entries(TWELVE_SYNCS_KEPT)) {
      const verdict = r.versions!.find((x) => x.versionId === ids[Number(k) - 1]);
      assert.deepEqual(verdict?.reasons, reasons, `sync ${k}'s reasons`);
    }
    forget(v, expected);
    assert.equal(await v.assertAllRestore(), 8);

    // GC: every chunk left is one a kept version needs, and every kept version still restores.
    const before = (await listChunks(v.backups)).length;
    await ageChunks(v.backups);
    const gc = await collectGarbage(v.backups);
    const left = new Set((await listChunks(v.backups)).map((c) => c.hash));
    assert.ok(gc.chunksRemoved > 0 && gc.bytesFreed >= gc.chunksRemoved, 'pruning left garbage that GC freed');
    assert.equal(left.size, before - gc.chunksRemoved);
    assert.deepEqual([...left].sort(), [...(await neededChunks(v.backups))].sort(), 'no garbage left, nothing lost');
    await assertChunksSound(v.backups);
    assert.equal(await v.assertAllRestore(), 8);

    // Pruning again changes nothing: the decision depends on the versions, not on today's date.
    const again = await pruneStore(v.backups, 'vol1', POLICY);
    assert.deepEqual(again.removed, []);
  });

  void test('a protected version survives a policy that would remove it; unprotected, it goes', async () => {
    const { v, ids } = await twelveSyncs(fx.d, fx.dir(), 2);
    const acts = createRetentionActivities({ backupsDir: v.backups, policy: POLICY });
    const p = await acts.setVersionProtected({ volume: 'vol1', version: ids[2]!.slice(0, 18), protected: true });
    assert.deepEqual(p, { key: 'vol1', versionId: ids[2], protected: true, unchanged: false });
    const r = await pruneStore(v.backups, 'vol1', POLICY);
    assert.deepEqual(r.versions!.find((x) => x.versionId === ids[2])?.reasons, ['protected']);
    assert.deepEqual(
      await versionIds(v.backups),
      [1, 2, 3, 4, 6, 9, 10, 11, 12].map((k) => ids[k - 1]!),
      'the others are decided as without it',
    );
    forget(v, await versionIds(v.backups));
    assert.equal(await v.assertAllRestore(), 9);
    await acts.setVersionProtected({ volume: 'vol1', version: ids[2]!, protected: false });
    const r2 = await pruneStore(v.backups, 'vol1', POLICY);
    assert.deepEqual(r2.removed, [ids[2]]);
  });

  void test("conf.json's snapshot_retention (the original dosvob's form) prunes as its rules say", async () => {
    const { v, ids } = await twelveSyncs(fx.d, fx.dir(), 3);
    const conf = loadConfig({
      path: await writeConf(join(v.dir, 'conf.json'), {
        snapshot_retention: [{ last: 2 }, { frequency: '1 day', duration: '1 month' }],
      }),
      requireToken: false,
    });
    const r = await pruneStore(v.backups, 'vol1', conf.retention);
    // last 2: syncs 12 and 11. One a day within a month of the newest (30 Nov 04:00, so from 30 Oct): 5, 6, 7, 8,
    // 9, 11 (the newer of 29 November's two) and 12. Removed: 1–4 (older) and 10 (11 is its day's newest).
    assert.deepEqual(
      await versionIds(v.backups),
      [5, 6, 7, 8, 9, 11, 12].map((k) => ids[k - 1]!),
    );
    assert.deepEqual(r.versions!.find((x) => x.versionId === ids[10])?.reasons, [
      'last 2',
      'within-daily 1m 2026-11-29',
    ]);
    forget(v, await versionIds(v.backups));
    assert.equal(await v.assertAllRestore(), 7);
  });

  void test('retention in conf.json is validated with the field named', async () => {
    const base = await mkdtemp(join(fx.root, 'conf-'));
    let confs = 0;
    const bad = async (extra: Record<string, unknown>, message: RegExp) => {
      const path = await writeConf(join(base, `c${++confs}.json`), extra);
      assert.throws(
        () => loadConfig({ path, requireToken: false }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.match(err.message, message);
          return true;
        },
      );
    };
    await bad({ keep: { daily: -1 } }, /keep\.daily: /);
    await bad({ keep: { dayly: 3 } }, /unknown key|dayly/);
    await bad({ keep: {} }, /keep: keeps nothing/);
    await bad({ keep: { within: '3x' } }, /keep\.within: .*not a duration/);
    await bad(
      { snapshot_retention: [{ frequency: '2 days', duration: '1 month' }] },
      /snapshot_retention\.0\.frequency/,
    );
    await bad({ keep: { last: 3 }, snapshot_retention: [{ last: 3 }] }, /set one of them, not both/);
    const dflt = loadConfig({ path: await writeConf(join(base, 'ok.json'), {}), requireToken: false });
    assert.deepEqual(
      dflt.retention.rules.map((r) =>
        'count' in r ? `${r.kind}${'period' in r ? `:${r.period}` : ''} ${r.count}` : '',
      ),
      ['last 6', 'period:daily 7', 'period:weekly 4', 'period:monthly 6'],
    );
  });

  void test('an older lineage (volume deleted and re-created) is pruned within itself and keeps its newest', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 16 * BLOCK);
    const next = rng(4);
    const old: string[] = [];
    const cur: string[] = [];
    const days = ['2026-11-01', '2026-11-02', '2026-11-03', '2026-11-20', '2026-11-21', '2026-11-22'];
    for (let k = 0; k < 6; k++) {
      if (k > 0) await v.mutate(next);
      const id = await syncAt(v, `${days[k]}T04:00:00Z`, { volumeId: k < 3 ? 'vol-id-old' : 'vol-id-new' });
      (k < 3 ? old : cur).push(id);
    }
    const listed = await listVersions(v.backups, 'vol1');
    assert.deepEqual(
      listed.map((x) => x.volumeId),
      ['vol-id-old', 'vol-id-old', 'vol-id-old', 'vol-id-new', 'vol-id-new', 'vol-id-new'],
    );
    const r = await pruneStore(v.backups, 'vol1', keepSchema.parse({ last: 1 }));
    assert.deepEqual(await versionIds(v.backups), [old[2]!, cur[2]!]);
    assert.deepEqual(r.versions!.find((x) => x.versionId === old[2])?.reasons, [
      'last 1',
      'newest of the earlier volume vol-id-old',
    ]);
    forget(v, await versionIds(v.backups));
    assert.equal(await v.assertAllRestore(), 2);
  });

  void test('a store a sync holds is skipped, not waited for and not pruned', async () => {
    const { v, ids } = await twelveSyncs(fx.d, fx.dir(), 5);
    const lock = await StoreLock.acquire(storePaths(v.backups, 'vol1').lock, 'vol1');
    try {
      const r = await pruneStore(v.backups, 'vol1', POLICY);
      assert.match(r.skipped ?? '', /vol1/);
      assert.deepEqual(await versionIds(v.backups), ids);
    } finally {
      await lock.release();
    }
  });

  void test('prune --dry-run changes no file and names the rules keeping each version', async () => {
    const { v, ids } = await twelveSyncs(fx.d, fx.dir(), 6);
    await setProtected(v.backups, 'vol1', ids[4]!, true);
    await ageChunks(v.backups);
    const beforeState = await treeState(v.backups);
    const env = new MockActivityEnvironment();
    const acts = createRetentionActivities({ backupsDir: v.backups, policy: POLICY });
    const report: PruneReport = await env.run(acts.pruneVersions, { dryRun: true });
    assert.deepEqual(await treeState(v.backups), beforeState, 'every file and directory as it was');
    assert.equal(report.versionsRemoved, 3);
    assert.ok((report.gc?.chunksRemoved ?? 0) > 0, 'it says what GC would free');
    const lines = pruneLines(report);
    const line = (k: number) => lines.find((l) => l.includes(ids[k - 1]!)) ?? '';
    assert.match(
      line(12),
      /2026-11-30 Mon 04:00 {2}keep {4}last 1, daily 2026-11-30, weekly 2026-W49, monthly 2026-11, newest$/,
    );
    assert.match(line(1), /keep {4}oldest monthly 2026-09$/);
    assert.match(line(5), /keep {4}protected$/);
    assert.match(line(3), /remove$/);
    assert.match(lines.join('\n'), /garbage collection: would remove \d+ of \d+ chunks/);
    assert.equal(lines.filter((l) => / keep /.test(l)).length, 9);

    // The same without --dry-run removes exactly what the dry run listed.
    const real: PruneReport = await new MockActivityEnvironment().run(acts.pruneVersions, {});
    assert.deepEqual(real.stores[0]!.removed, report.stores[0]!.removed);
    assert.equal(real.gc?.chunksRemoved, report.gc?.chunksRemoved);
    forget(v, await versionIds(v.backups));
    assert.equal(await v.assertAllRestore(), 9);
    await assertChunksSound(v.backups);
  });
});
