// A worker SIGKILLed during each step of a run: a new worker continues it to the end, the image is
// identical, nothing is left behind and nothing was created twice.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { HandledCall } from '../simulator/http-server';
import type { BackupResult } from '../../workflows/types';
import { randomData, sameBytes } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { uniqueId } from '../support/temporal';

const MiB = 1 << 20;

interface Step {
  name: string;
  at: (call: HandledCall) => boolean;
}

const api = (method: string, template: string, type?: string): Step['at'] => {
  return (c) =>
    c.method === method &&
    c.template === template &&
    (type === undefined || (c.requestBody as { type?: string } | undefined)?.type === type);
};

/** The steps of a one-volume run (the snapshot and copy run while the droplet boots). */
const STEPS_BEFORE_TRANSFER: Step[] = [
  { name: 'sweep', at: api('GET', '/v2/droplets') },
  { name: 'register key', at: api('POST', '/v2/account/keys') },
  { name: 'create droplet', at: api('POST', '/v2/droplets') },
  { name: 'wait for droplet', at: api('GET', '/v2/droplets/{droplet_id}') },
  { name: 'snapshot', at: api('POST', '/v2/volumes/{volume_id}/snapshots') },
  { name: 'copy volume', at: api('POST', '/v2/volumes') },
  { name: 'attach', at: api('POST', '/v2/volumes/{volume_id}/actions', 'attach') },
];
const STEPS_AFTER_TRANSFER: Step[] = [
  { name: 'detach', at: api('POST', '/v2/volumes/{volume_id}/actions', 'detach') },
  { name: 'delete copy', at: api('DELETE', '/v2/volumes/{volume_id}') },
  { name: 'delete snapshot', at: api('DELETE', '/v2/snapshots/{snapshot_id}') },
  { name: 'delete droplet', at: api('DELETE', '/v2/droplets/{droplet_id}') },
  { name: 'delete key', at: api('DELETE', '/v2/account/keys/{ssh_key_identifier}') },
];

describe('a worker killed during each step', () => {
  let h: Harness;
  let volumeId: string;
  let worker: ChildProcess;
  const killed: string[] = [];

  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    volumeId = v.id;
    // Enough data that the transfer is still running when the test looks at it.
    for (let i = 0; i < 6; i++) await h.sim.writeVolume(volumeId, i * 150 * MiB, randomData(24 * MiB));
  });
  after(async () => h?.close());

  let killing: Promise<void> = Promise.resolve();

  /** One kill at a time: steps may run concurrently, the worker process is one. */
  function killAndReplace(step: string): Promise<void> {
    killing = killing.then(async () => {
      killed.push(step);
      const dead = worker;
      const exited = new Promise((resolve) => dead.once('exit', resolve));
      dead.kill('SIGKILL');
      await exited;
      worker = await h.spawnWorker();
    });
    return killing;
  }

  /** Kill the worker while the transfer is under way (it has heartbeated progress). */
  async function killDuringTransfer(handle: WorkflowHandle): Promise<void> {
    for (;;) {
      const { raw } = await handle.describe();
      const transfer = raw.pendingActivities?.find((a) => a.activityType?.name === 'transferVolume');
      const payload = transfer?.heartbeatDetails?.payloads?.[0];
      if (payload) {
        const details = defaultPayloadConverter.fromPayload<{ blocksDone?: number } | undefined>(payload);
        if ((details?.blocksDone ?? 0) > 0) return killAndReplace('transfer');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('completes on a new worker with an identical image, zero leftovers and no duplicate creates', async () => {
    worker = await h.spawnWorker();
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
      await killAndReplace(step.name);
      if (step.name === 'attach' && current.handle) transferKill = killDuringTransfer(current.handle);
    };
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
      [...killed].sort(),
      [...STEPS_BEFORE_TRANSFER.map((s) => s.name), 'transfer', ...STEPS_AFTER_TRANSFER.map((s) => s.name)].sort(),
      'a worker was killed during every step',
    );
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    assert.ok(await sameBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(volumeId)), 'image identical');
    const live = h.sim.liveResources();
    assert.deepEqual(
      [live.droplets.length, live.snapshots.length, live.sshKeys.length, live.volumes.length],
      [0, 0, 0, 1],
      'nothing left but the source volume',
    );
    const created = h.sim.creationCounts();
    assert.deepEqual(
      { droplets: created.droplets, volumes: created.volumes, snapshots: created.snapshots, sshKeys: created.sshKeys },
      { droplets: 1, volumes: 1, snapshots: 1, sshKeys: 1 },
      'no duplicate creates',
    );
    // The transfer attempt after the kill resumed rather than starting over.
    const history = await handle.fetchHistory();
    const transferAttempts = history.events?.filter(
      (e) =>
        e.activityTaskStartedEventAttributes &&
        e.activityTaskStartedEventAttributes.attempt &&
        e.activityTaskStartedEventAttributes.attempt > 1,
    );
    assert.ok((transferAttempts?.length ?? 0) >= 1, 'the history shows retried attempts');
  });
});
