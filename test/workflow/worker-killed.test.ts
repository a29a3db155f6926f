// A worker SIGKILLed during each step of a run: a new worker continues it to the end, the image is
// identical, nothing is left behind and nothing was created twice.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { activityAttempts, assertNothingLeft } from '../support/run-checks';
import { WorkerKiller } from '../support/worker-killer';
import { STEPS_AFTER_TRANSFER, STEPS_BEFORE_TRANSFER } from '../support/run-steps';
import { sameSparseBytes } from '../support/sparse';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { uniqueId } from '../support/temporal';

const MiB = 1 << 20;

describe('a worker killed during each step', () => {
  let h: Harness;
  let volumeId: string;
  let killer: WorkerKiller;

  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    killer = new WorkerKiller(h);
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    volumeId = v.id;
    for (let i = 0; i < 6; i++) await h.sim.writeVolume(volumeId, i * 150 * MiB, randomData(24 * MiB));
  });
  after(async () => h?.close());

  /**
   * Kill the worker while the transfer is under way: the droplet's stream stalls after 8 MiB (set before the run),
   * so the transfer is caught mid-way however fast the machine (the retry's stream goes through).
   */
  async function killDuringTransfer(handle: WorkflowHandle): Promise<void> {
    const deadline = Date.now() + 120_000; // a bound for failing only
    for (;;) {
      const started = Date.now();
      const { raw } = await handle.describe();
      const transfer = raw.pendingActivities?.find((a) => a.activityType?.name === 'transferVolume');
      if (transfer && h.sim.faults.sshStallAfterBytes === undefined) return killer.killAndReplace('transfer');
      assert.ok(Date.now() < deadline, 'the transfer never reached the stall');
      await new Promise((r) => setTimeout(r, Math.max(0, started + 50 - Date.now())));
    }
  }

  it('completes on a new worker with an identical image, zero leftovers and no duplicate creates', async () => {
    await killer.start();
    const pending = [...STEPS_BEFORE_TRANSFER, ...STEPS_AFTER_TRANSFER];
    let transferKill: Promise<void> | undefined;
    const current: { handle?: WorkflowHandle } = {};
    // The kill lands after DigitalOcean has acted and before the worker hears the answer:
    // the hardest case, where the resource exists but the workflow never learned its id.
    h.sim.onHandled = async (call) => {
      const index = pending.findIndex((s) => s.at(call));
      const step = pending[index];
      if (!step) return;
      pending.splice(index, 1);
      await killer.killAndReplace(step.name);
      if (step.name === 'attach' && current.handle) transferKill = killDuringTransfer(current.handle);
    };
    h.sim.setFaults({ sshStallAfterBytes: 8 * MiB });
    const workflowId = uniqueId('killed');
    const handle = (current.handle = await h.client.workflow.start('backupWorkflow', {
      taskQueue: h.taskQueue,
      workflowId,
      workflowTaskTimeout: '2s',
      args: [
        {
          singletonId: workflowId,
          timings: {
            ...FAST_TIMINGS,
            apiStepTimeoutMs: 3_000,
            apiHeartbeatTimeoutMs: 2_000,
            transferHeartbeatTimeoutMs: 2_000,
          },
        },
      ],
    }));
    const result = (await handle.result()) as BackupResult;
    await transferKill;
    h.sim.onHandled = undefined;

    assert.deepEqual(
      [...killer.killed].sort(),
      [...STEPS_BEFORE_TRANSFER.map((s) => s.name), 'transfer', ...STEPS_AFTER_TRANSFER.map((s) => s.name)].sort(),
      'a worker was killed during every step',
    );
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    assert.ok(
      await sameSparseBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(volumeId)),
      'image identical',
    );
    assertNothingLeft(h.sim, ['app-data']);
    const created = h.sim.creationCounts();
    assert.deepEqual(
      { droplets: created.droplets, volumes: created.volumes, snapshots: created.snapshots, sshKeys: created.sshKeys },
      { droplets: 1, volumes: 1, snapshots: 1, sshKeys: 1 },
      'no duplicate creates',
    );
    // The killed attempts show in the history: the transfer's own among them.
    const attempts = activityAttempts(await handle.fetchHistory());
    assert.ok(
      attempts.some((a) => a.type === 'transferVolume' && a.attempt > 1),
      'the transfer was retried after its worker died',
    );
  });
});
