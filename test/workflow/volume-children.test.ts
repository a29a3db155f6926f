// The history-size guard: a run of more volumes than `volumesPerHistory` backs each one up in a child workflow of its
// own (lowered here to 1). The images, the cleanup, the one-run-at-a-time id and the progress view are as inline;
// the run's own history holds no per-volume activity; a cancel and a killed worker across the boundary leave nothing.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RunReader } from '../../client/run-state';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { assertEndsCancelled, assertNothingLeft } from '../support/run-checks';
import { apiCall } from '../support/run-steps';
import { sameSparseBytes } from '../support/sparse';
import { uniqueId } from '../support/temporal';
import { WorkerKiller } from '../support/worker-killer';
import { historyJson, maybeRecordHistory } from '../support/history';
import { waitFor } from '../cli/support';

const MiB = 1 << 20;
const NAMES = ['alpha', 'beta', 'gamma'];

async function threeVolumes(h: Harness): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const [i, name] of NAMES.entries()) {
    ids[name] = (await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 })).id;
    await h.sim.writeVolume(ids[name], i * 64 * MiB, randomData(12 * MiB));
  }
  return ids;
}

async function assertImages(h: Harness, ids: Record<string, string>, result: BackupResult): Promise<void> {
  assert.deepEqual(
    result.volumes.map((v) => [v.name, v.ok]),
    NAMES.map((n) => [n, true]),
  );
  for (const name of NAMES) {
    assert.ok(await sameSparseBytes(path.join(h.backupsDir, `${name}.img`), h.sim.volumeFile(ids[name]!)), name);
  }
}

describe('a large run, one child workflow per volume', () => {
  let h: Harness;
  let ids: Record<string, string>;

  before(async () => {
    h = await startHarness();
    ids = await threeVolumes(h);
  });
  after(async () => h?.close());

  it('backs every volume up in its own child: same images, cleanup and cost; the run history stays small', async () => {
    const handle = await h.start({ volumesPerHistory: 1 });
    const result = (await handle.result()) as BackupResult;
    await assertImages(h, ids, result);
    assertNothingLeft(h.sim, NAMES);
    const history = await handle.fetchHistory();
    maybeRecordHistory('backup-volume-children', handle.workflowId, await historyJson(handle));
    const scheduled = (history.events ?? []).flatMap((e) =>
      e.activityTaskScheduledEventAttributes?.activityType?.name
        ? [e.activityTaskScheduledEventAttributes.activityType.name]
        : [],
    );
    assert.ok(!scheduled.includes('transferVolume'), 'no transfer in the run history');
    assert.ok(!scheduled.includes('snapshotVolume'), 'no snapshot in the run history');
    const started = (history.events ?? []).filter((e) => e.childWorkflowExecutionStartedEventAttributes).length;
    assert.equal(started, NAMES.length, 'one child per volume');
    assert.ok(result.deleted.filter((d) => d.startsWith('snapshot ')).length === NAMES.length, 'snapshots deleted');
    assert.ok(result.resourceSeconds.snapshotGibSeconds > 0, "the children's cost is counted");
    assert.ok(result.resourceSeconds.dropletSeconds > 0);
  });

  it('cancelled while a child transfers: the progress view shows the child; nothing is left', async () => {
    // New data in every volume, so that this incremental run has megabytes to send.
    for (const [i, name] of NAMES.entries()) await h.sim.writeVolume(ids[name]!, i * 64 * MiB, randomData(12 * MiB));
    // Stalled after 6 of its 12 MiB: the stalled transfer has reported progress, and stays in view until the cancel.
    h.sim.setFaults({ sshStallAfterBytes: 6 * MiB });
    const handle = await h.start({ volumesPerHistory: 1 });
    try {
      const reader = new RunReader(h.client, handle);
      const seen = await waitFor(
        'a child volume transferring, seen through the run',
        async () => {
          const state = await reader.read();
          const v = state.progress?.volumes.find((x) => x.step === 'transfer');
          return v && state.transfers.has(v.name) ? v : undefined;
        },
        120_000,
      );
      assert.ok(NAMES.includes(seen.name));
      await handle.cancel();
      await assertEndsCancelled(handle);
    } finally {
      h.sim.setFaults({});
    }
    assertNothingLeft(h.sim, NAMES);
  });
});

describe('a large run whose worker is killed across the boundary', () => {
  let h: Harness;
  let ids: Record<string, string>;
  let killer: WorkerKiller;

  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    ids = await threeVolumes(h);
    killer = new WorkerKiller(h);
    await killer.start();
  });
  after(async () => h?.close());

  it('finishes on a new worker, nothing left', async () => {
    let snapshots = 0;
    let kills: Promise<void> = Promise.resolve();
    const snapshot = apiCall('POST', '/v2/volumes/{volume_id}/snapshots');
    h.sim.onHandled = async (call) => {
      // Killed while a child creates its snapshot, and again at the next child's.
      if (snapshot(call) && ++snapshots <= 2) kills = killer.killAndReplace(`snapshot ${snapshots}`);
      await kills;
    };
    const workflowId = uniqueId('children-killed');
    const handle = await h.client.workflow.start('backupWorkflow', {
      taskQueue: h.taskQueue,
      workflowId,
      workflowTaskTimeout: '2s',
      args: [
        {
          singletonId: workflowId,
          volumesPerHistory: 1,
          timings: {
            pollIntervalMs: 50,
            apiStepTimeoutMs: 3_000,
            apiHeartbeatTimeoutMs: 2_000,
            transferHeartbeatTimeoutMs: 2_000,
            retryInitialIntervalMs: 100,
            retryMaximumIntervalMs: 1_000,
          },
        },
      ],
    });
    const result = (await handle.result()) as BackupResult;
    h.sim.onHandled = undefined;
    assert.deepEqual(killer.killed, ['snapshot 1', 'snapshot 2']);
    await assertImages(h, ids, result);
    assertNothingLeft(h.sim, NAMES);
    assert.equal(h.sim.creationCounts().snapshots, NAMES.length, 'no duplicate snapshot');
  });
});
