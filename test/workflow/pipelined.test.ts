// The pace of a run (workflows/backup.ts, PIPELINED_VOLUMES): the next volumes are snapshotted and copied while
// others transfer, `concurrency` copies at most are attached at once, and a droplet's attaches and detaches go one at
// a time, as DigitalOcean runs them, instead of earning a 422 "pending event" each time they collide.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BackupResult, RunProgress } from '../../workflows/types';
import type { CallLogEntry } from '../simulator/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { historyJson, maybeRecordHistory } from '../support/history';
import { assertEndsCancelled, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;

/** The volume id of an `/v2/volumes/{id}/…` request. */
const volumeOf = (e: CallLogEntry): string | undefined => /^\/v2\/volumes\/([^/]+)\//.exec(e.path)?.[1];
const dropletOf = (e: CallLogEntry): number | undefined => (e.requestBody as { droplet_id?: number }).droplet_id;
const actionType = (e: CallLogEntry): string | undefined =>
  (e.requestBody as { type?: string } | undefined)?.type ?? undefined;
const isVolumeAction = (e: CallLogEntry): boolean =>
  e.method === 'POST' && e.template === '/v2/volumes/{volume_id}/actions';

async function setUp(
  concurrency: number,
  sizes: number[],
  dropletLimit?: number,
): Promise<{ h: Harness; ids: Map<string, string> }> {
  // Actions long enough that two on one droplet would overlap if the run asked for them together.
  const h = await startHarness({
    config: { concurrency },
    sim: { actionDelayMs: 300, ...(dropletLimit === undefined ? {} : { dropletLimit }) },
  });
  const ids = new Map<string, string>();
  for (const [i, size] of sizes.entries()) {
    const v = await h.sim.createVolume({ name: `vol-${i}`, region: 'nyc3', sizeGigabytes: size });
    await h.sim.writeVolume(v.id, i * MiB, randomData(MiB));
    ids.set(v.name, v.id);
  }
  return { h, ids };
}

async function assertBackedUp(h: Harness, ids: Map<string, string>, result: BackupResult): Promise<void> {
  assert.equal(result.volumes.length, ids.size);
  for (const v of result.volumes) {
    assert.ok(v.ok, `${v.name}: ${v.error}`);
    const image = path.join(h.backupsDir, `${v.name}.img`);
    assert.ok(await sameSparseBytes(image, h.sim.volumeFile(ids.get(v.name) ?? '')), `${v.name}.img equals its source`);
  }
  assertNothingLeft(h.sim, [...ids.keys()]);
}

describe('a run paces its volumes as the API allows', () => {
  describe('four volumes at concurrency 3 on one droplet', () => {
    let h: Harness;
    let ids: Map<string, string>;
    before(async () => ({ h, ids } = await setUp(3, [1, 1, 1, 1])));
    after(() => h?.close());

    it("asks for one droplet action at a time: no 422 'pending event', one attach and one detach per volume", async () => {
      const handle = await h.start();
      const result = (await handle.result()) as BackupResult;
      maybeRecordHistory('backup-pipelined-two-droplets', handle.workflowId, await historyJson(handle));
      await assertBackedUp(h, ids, result);
      const actions = h.sim.callLog.filter(isVolumeAction);
      const refused = actions.filter((e) => e.status === 422);
      assert.deepEqual(
        refused.map((e) => `${actionType(e)} ${volumeOf(e)}: ${JSON.stringify(e.responseBody)}`),
        [],
        'no action was asked for while another was pending',
      );
      const attaches = actions.filter((e) => e.status === 202 && actionType(e) === 'attach');
      assert.equal(attaches.length, 4);
      assert.equal(actions.filter((e) => e.status === 202 && actionType(e) === 'detach').length, 4);
      // Half the concurrency, rounded up, in droplets: two. Which volume takes which depends on which droplet is up
      // first (droplet-pool.test.ts has the choice itself); every attach is to one of the run's two.
      assert.equal(h.sim.creationCounts().droplets, 2);
      const droplets = new Set(
        h.sim.callLog
          .filter((e) => e.method === 'POST' && e.path === '/v2/droplets' && e.status === 202)
          .map((e) => (e.responseBody as { droplet: { id: number } }).droplet.id),
      );
      assert.equal(droplets.size, 2);
      for (const e of attaches) assert.ok(droplets.has(dropletOf(e) ?? -1), "attached to one of the run's droplets");
    });
  });

  describe("four volumes at concurrency 3, with the account's droplet limit reached", () => {
    let h: Harness;
    let ids: Map<string, string>;
    before(async () => ({ h, ids } = await setUp(3, [1, 1, 1, 1], 1)));
    after(() => h?.close());

    it('uses the one droplet the limit leaves room for', async () => {
      const result = await h.run();
      await assertBackedUp(h, ids, result);
      assert.equal(h.sim.creationCounts().droplets, 1);
      assert.equal(
        h.sim.callLog.filter((e) => e.method === 'POST' && e.path === '/v2/droplets').length,
        1,
        'no droplet was asked for past the limit',
      );
    });
  });

  describe('three volumes at concurrency 1', () => {
    let h: Harness;
    let ids: Map<string, string>;
    // Largest first: vol-0 (3 GiB), then vol-1, then vol-2.
    before(async () => ({ h, ids } = await setUp(1, [3, 2, 1])));
    after(() => h?.close());

    it('snapshots and copies the next volume while one transfers, and attaches one copy at a time', async () => {
      const handle = await h.start();
      const result = (await handle.result()) as BackupResult;
      await assertBackedUp(h, ids, result);
      maybeRecordHistory('backup-pipelined', handle.workflowId, await historyJson(handle));
      const log = h.sim.callLog;
      const first = (pred: (e: CallLogEntry) => boolean, what: string): number => {
        const i = log.findIndex(pred);
        assert.ok(i >= 0, `the log has ${what}`);
        return i;
      };
      const snapshotOf = (name: string) =>
        first(
          (e) =>
            e.method === 'POST' && e.template === '/v2/volumes/{volume_id}/snapshots' && volumeOf(e) === ids.get(name),
          `vol ${name}'s snapshot`,
        );
      const copyOf = (name: string) =>
        first(
          (e) =>
            e.method === 'POST' &&
            e.template === '/v2/volumes' &&
            e.status === 201 &&
            String((e.requestBody as { name?: string }).name).endsWith(`-${name}`),
          `vol ${name}'s copy`,
        );
      // The copies' attaches and detaches, in the order asked: strictly attach, detach, attach, detach, ...
      const sequence = log.filter((e) => isVolumeAction(e) && e.status === 202).map((e) => actionType(e));
      assert.deepEqual(sequence, ['attach', 'detach', 'attach', 'detach', 'attach', 'detach']);
      const firstDetach = first((e) => isVolumeAction(e) && actionType(e) === 'detach', 'a detach');
      assert.ok(snapshotOf('vol-1') < firstDetach, "vol-1 was snapshotted before vol-0's copy was detached");
      assert.ok(copyOf('vol-1') < firstDetach, "vol-1's copy was made before vol-0's was detached");
      // …but not the one after it: one volume is prepared ahead per transfer slot, not the whole account.
      assert.ok(snapshotOf('vol-2') > firstDetach, 'vol-2 waited for a place among the volumes in flight');
    });
  });

  describe('a cancel while volumes wait for their place', () => {
    let h: Harness;
    before(async () => ({ h } = await setUp(1, [3, 2, 1])));
    after(() => h?.close());

    it('ends cancelled, and the copies made ahead are deleted with the rest', async () => {
      // The droplet never comes up while held: the first volume holds the one place, waiting for it, and the second,
      // copied ahead, waits in the queue for that place.
      const release = h.sim.holdTransitions();
      const handle = await h.start();
      try {
        const deadline = Date.now() + 120_000;
        for (;;) {
          // Until its first workflow task has run, the run has no progress query yet.
          const progress = await handle.query<RunProgress>('progress').catch(() => undefined);
          if (progress?.volumes.filter((v) => v.step === 'waiting to attach').length === 2) break;
          assert.equal((await handle.describe()).status.name, 'RUNNING', 'the run ended before two volumes waited');
          assert.ok(Date.now() < deadline, 'two volumes never waited to attach');
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(h.sim.liveResources().volumes.length > 3, 'copies were made ahead');
        await handle.cancel();
      } finally {
        release();
      }
      await assertEndsCancelled(handle);
      assertNothingLeft(h.sim, ['vol-0', 'vol-1', 'vol-2']);
      assert.equal((await handle.query<RunProgress>('progress')).phase, 'finished');
    });
  });
});
