// Garbage collection beside syncs, and SIGKILL during pruning and during GC: every kept version stays restorable
// byte-exact and verified, whatever interleaves.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { listChunks, removeVersionManifests } from '../../activities/store/index.js';
import { collectGarbage, pruneStore } from '../../activities/retention/index';
import { keepSchema } from '../../common/retention-config';
import { TWELVE_SYNCS_KEEP, TWELVE_SYNCS_KEPT } from '../support/retention-timeline';
import { dropletFixture } from '../transfer/helpers.js';
import { BLOCK, TestVolume, assertChunksSound } from '../store/support.js';
import { ageChunks, forget, neededChunks, twelveSyncs, versionIds } from './support';

const CHILD = join(__dirname, 'fixtures', 'retention-kill-child.ts');

const fx = dropletFixture('dosvob-gc-');

async function killedChild(opts: Record<string, unknown>): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_c, sig) => resolve(sig)));
  assert.equal(signal, 'SIGKILL', `the child was to be killed (${JSON.stringify(opts)}): ${out}`);
}

void describe('garbage collection beside a sync', { concurrency: false }, () => {
  void test('a sync committing between the mark and the sweep keeps a garbage chunk it now needs', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 12 * BLOCK);
    const x = randomBytes(BLOCK);
    await v.write(0, x);
    const v1 = (await v.sync()).versionId!;
    await v.write(0, randomBytes(BLOCK)); // X is kept as a chunk for v1
    await v.sync();
    await v.write(5 * BLOCK, x); // X is in the image again, at block 5
    const v3 = (await v.sync()).versionId!;
    await removeVersionManifests(v.backups, 'vol1', [v1]); // the only version that needed chunk X is gone
    forget(v, await versionIds(v.backups));
    await ageChunks(v.backups);
    const xHash = createHash('sha256').update(x).digest('hex');
    assert.ok(
      (await listChunks(v.backups)).some((c) => c.hash === xHash),
      'X is in the chunk store',
    );
    assert.ok(!(await neededChunks(v.backups)).has(xHash), 'X is garbage when the mark runs');

    let synced = false;
    const gc = await collectGarbage(v.backups, {
      hooks: {
        // The mark has read the store without the next version; the sync overwrites block 5, whose content (X) an
        // older version, v3, will then need from the chunk store. X exists, so the sync only touches it.
        beforeSweep: async () => {
          await v.write(5 * BLOCK, randomBytes(BLOCK));
          await v.sync();
          synced = true;
        },
      },
    });
    assert.ok(synced);
    assert.ok(
      (await listChunks(v.backups)).some((c) => c.hash === xHash),
      'X survived the sweep',
    );
    assert.ok(gc.youngUnneeded >= 1, `the touched chunk was spared as too recent: ${JSON.stringify(gc)}`);
    await assertChunksSound(v.backups);
    assert.equal(await v.assertAllRestore(), 3, `v3 (${v3}) and the others restore byte-exact`);
    // A later GC, with the new version on disk, finds X needed.
    await ageChunks(v.backups);
    const later = await collectGarbage(v.backups);
    assert.equal(later.youngUnneeded, 0);
    assert.equal(await v.assertAllRestore(), 3);
  });

  void test('syncs and collections run at the same time: no kept version loses a chunk', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 24 * BLOCK);
    let seed = 7;
    const next = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    await v.sync();
    for (let round = 0; round < 4; round++) {
      await v.mutate(next, round % 2 ? Buffer.alloc(BLOCK, 9) : undefined);
      const ids = await versionIds(v.backups);
      if (ids.length > 2) {
        await removeVersionManifests(v.backups, 'vol1', [ids[0]!]);
        forget(v, ids.slice(1));
      }
      await ageChunks(v.backups);
      await Promise.all([v.sync(), collectGarbage(v.backups, { marginMs: 0 }), collectGarbage(v.backups)]);
      await assertChunksSound(v.backups);
      assert.ok((await v.assertAllRestore()) >= 2);
    }
  });
});

void describe('SIGKILL during pruning and garbage collection', { concurrency: false }, () => {
  const policy = keepSchema.parse(TWELVE_SYNCS_KEEP);
  const expectedSurvivors = Object.keys(TWELVE_SYNCS_KEPT)
    .map(Number)
    .sort((a, b) => a - b);

  void test('killed while removing manifests: what remains restores, a new prune finishes the job', async () => {
    const { v, ids } = await twelveSyncs(fx.d, fx.dir(), 21);
    await killedChild({ backupsDir: v.backups, mode: 'prune', keep: TWELVE_SYNCS_KEEP });
    const left = await versionIds(v.backups);
    for (const k of expectedSurvivors) assert.ok(left.includes(ids[k - 1]!), `sync ${k} (kept by the policy) is there`);
    forget(v, left);
    assert.equal(await v.assertAllRestore(), left.length);
    await assertChunksSound(v.backups);
    await pruneStore(v.backups, 'vol1', policy);
    assert.deepEqual(
      await versionIds(v.backups),
      expectedSurvivors.map((k) => ids[k - 1]!),
    );
    forget(v, await versionIds(v.backups));
    await ageChunks(v.backups);
    await collectGarbage(v.backups);
    assert.equal(await v.assertAllRestore(), expectedSurvivors.length);
    await assertChunksSound(v.backups);
  });

  void test('killed mid-sweep: every kept version restores and verifies; the next GC removes the rest', async () => {
    const { v } = await twelveSyncs(fx.d, fx.dir(), 22);
    await pruneStore(v.backups, 'vol1', policy);
    forget(v, await versionIds(v.backups));
    await ageChunks(v.backups);
    const needed = await neededChunks(v.backups);
    const garbage = (await listChunks(v.backups)).filter((c) => !needed.has(c.hash)).length;
    assert.ok(garbage >= 3, `enough garbage to be killed amid it (${garbage})`);
    await killedChild({ backupsDir: v.backups, mode: 'gc', killAfterRemoved: 2 });
    const after1 = (await listChunks(v.backups)).filter((c) => !needed.has(c.hash)).length;
    assert.equal(after1, garbage - 2, 'killed after the second removal');
    assert.equal(await v.assertAllRestore(), expectedSurvivors.length);
    await assertChunksSound(v.backups);
    const gc = await collectGarbage(v.backups);
    assert.equal(gc.chunksRemoved, garbage - 2);
    assert.deepEqual((await listChunks(v.backups)).map((c) => c.hash).sort(), [...needed].sort());
    assert.equal(await v.assertAllRestore(), expectedSurvivors.length);
  });
});
