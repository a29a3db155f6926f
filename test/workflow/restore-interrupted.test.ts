// A restore interrupted at every step: a SIGKILLed worker (the run resumes on a new one and finishes with a complete,
// verified volume and no duplicate creates), and a cancel (the run ends with nothing ephemeral left and either no
// target volume at all or a complete, verified one).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CancelledFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { createApiClient } from 'dots-wrapper';
import type { RestoreResult } from '../../workflows/restore';
import type { HandledCall } from '../simulator/http-server';
import { startHarness, type Harness } from '../support/harness';
import { WorkerKiller } from '../support/worker-killer';
import { activityAttempts } from '../support/run-checks';
import { apiCall, type RunStep } from '../support/run-steps';
import { sameSparseBytes } from '../support/sparse';
import { historyJson, maybeRecordHistory } from '../support/history';
import { assertCleanExt4, copyOfVolume, ext4Volume, startRestore } from './restore-support';

const MiB = 1 << 20;

/** A restore's steps, by the DigitalOcean call that does each (the transfer is caught by a stalled stream). */
const RESTORE_STEPS: readonly RunStep[] = [
  { name: 'check token', at: apiCall('GET', '/v2/account') },
  { name: 'check target', at: apiCall('GET', '/v2/regions') },
  { name: 'find droplet to attach to', at: apiCall('GET', '/v2/droplets') },
  { name: 'sweep', at: apiCall('GET', '/v2/snapshots') },
  { name: 'register key', at: apiCall('POST', '/v2/account/keys') },
  { name: 'create droplet', at: apiCall('POST', '/v2/droplets') },
  { name: 'wait for droplet', at: apiCall('GET', '/v2/droplets/{droplet_id}') },
  { name: 'create volume', at: apiCall('POST', '/v2/volumes') },
  { name: 'attach', at: apiCall('POST', '/v2/volumes/{volume_id}/actions', 'attach') },
  { name: 'detach', at: apiCall('POST', '/v2/volumes/{volume_id}/actions', 'detach') },
  { name: 'attach to droplet', at: apiCall('POST', '/v2/volumes/{volume_id}/actions', 'attach') },
  { name: 'delete droplet', at: apiCall('DELETE', '/v2/droplets/{droplet_id}') },
  { name: 'delete key', at: apiCall('DELETE', '/v2/account/keys/{ssh_key_identifier}') },
];

/** Resolves once the restore's writing is under way and held (the droplet stopped reading after 2 MiB). */
async function whenWriting(h: Harness, handle: WorkflowHandle): Promise<void> {
  const deadline = Date.now() + 120_000; // a bound for failing only
  for (;;) {
    const { raw } = await handle.describe();
    const writing = raw.pendingActivities?.find((a) => a.activityType?.name === 'restoreToDevice');
    if (writing && h.sim.faults.sshStallInputAfterBytes === undefined) return;
    assert.ok(Date.now() < deadline, 'the restore never reached the stalled write');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function ephemeralLeft(h: Harness): string[] {
  const live = h.sim.liveResources();
  return [
    ...live.droplets.filter((d) => d.tags.includes('dosvob-ephemeral')).map((d) => `droplet ${d.name}`),
    ...live.snapshots.map((s) => `snapshot ${s.name}`),
    ...live.sshKeys.map((k) => `key ${k.name}`),
    ...live.volumes.filter((v) => v.name.startsWith('dosvob-ephemeral')).map((v) => `volume ${v.name}`),
    ...live.pendingActions.map((a) => `action ${a.id}`),
  ];
}

async function userDroplet(h: Harness, name: string): Promise<number> {
  const api = createApiClient({ token: h.sim.token, endpoint: `${h.sim.apiUrl}/v2` });
  const { data } = await api.droplet.createDroplet({
    name,
    region: 'nyc3',
    size: 's-1vcpu-1gb',
    image: 'debian-12-x64',
  });
  return data.droplet.id;
}

describe('a restore whose worker is killed during each step', () => {
  let h: Harness;
  let killer: WorkerKiller;
  let expected: string;
  let webId: number;
  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    killer = new WorkerKiller(h);
    await killer.start();
    const id = await ext4Volume(h, 'data');
    expected = await copyOfVolume(h, id);
    await h.run({ include: ['data'] });
    webId = await userDroplet(h, 'web-1');
  });
  after(async () => h?.close());

  it('finishes on a new worker: the volume complete and verified, nothing ephemeral left, no duplicate creates', async () => {
    const createdBefore = h.sim.creationCounts();
    const pending = [...RESTORE_STEPS];
    const current: { handle?: WorkflowHandle } = {};
    let transferKill: Promise<void> | undefined;
    h.sim.onHandled = async (call: HandledCall) => {
      const index = pending.findIndex((s) => s.at(call));
      const step = pending[index];
      if (!step) return;
      pending.splice(index, 1);
      if (step.name === 'attach') h.sim.setFaults({ sshStallInputAfterBytes: 2 * MiB });
      await killer.killAndReplace(step.name);
      if (step.name === 'attach' && current.handle) {
        const h0 = current.handle;
        transferKill = whenWriting(h, h0).then(() => killer.killAndReplace('transfer'));
      }
    };
    const handle = (current.handle = await startRestore(
      h,
      {
        volume: 'data',
        toVolume: 'data-back',
        attachTo: 'web-1',
        timings: { apiStepTimeoutMs: 3_000, apiHeartbeatTimeoutMs: 2_000, transferHeartbeatTimeoutMs: 2_000 },
      },
      { workflowTaskTimeout: '2s' },
    ));
    const result = (await handle.result()) as RestoreResult;
    await transferKill;
    h.sim.onHandled = undefined;

    assert.deepEqual(
      [...killer.killed].sort(),
      [...RESTORE_STEPS.map((s) => s.name), 'transfer'].sort(),
      'a worker was killed during every step',
    );
    const target = h.sim.liveResources().volumes.find((v) => v.name === 'data-back');
    assert.ok(target, 'the restored volume exists');
    assert.equal(target.id, result.target.volumeId);
    assert.deepEqual(target.dropletIds, [webId], 'attached to web-1');
    assert.ok(await sameSparseBytes(target.file, expected), 'byte-exact');
    await assertCleanExt4(target.file);
    assert.deepEqual(ephemeralLeft(h), [], 'nothing ephemeral left');
    const created = h.sim.creationCounts();
    assert.deepEqual(
      {
        droplets: created.droplets - createdBefore.droplets,
        volumes: created.volumes - createdBefore.volumes,
        sshKeys: created.sshKeys - createdBefore.sshKeys,
      },
      { droplets: 1, volumes: 1, sshKeys: 1 },
      'no duplicate creates',
    );
    maybeRecordHistory('restore-worker-killed', handle.workflowId, await historyJson(handle));
    const attempts = activityAttempts(await handle.fetchHistory());
    assert.ok(
      attempts.some((a) => a.type === 'restoreToDevice' && a.attempt > 1),
      'the writing was retried after its worker died',
    );
  });
});

describe('a restore cancelled during each step', () => {
  let h: Harness;
  let expected: string;

  before(async () => {
    h = await startHarness();
    const id = await ext4Volume(h, 'data');
    expected = await copyOfVolume(h, id);
    await h.run({ include: ['data'] });
    await userDroplet(h, 'web-1');
  });
  after(async () => h?.close());

  for (const stepName of [...RESTORE_STEPS.map((s) => s.name), 'transfer']) {
    if (stepName === 'delete droplet' || stepName === 'delete key') continue; // teardown: not cancellable by design
    it(`cancelled at "${stepName}": nothing ephemeral left; no target, or a complete verified one`, async () => {
      const toVolume = `back-${stepName.replace(/[^a-z]+/g, '-')}`.slice(0, 60);
      let cancelled = false;
      const current: { handle?: WorkflowHandle } = {};
      const pending = [...RESTORE_STEPS];
      h.sim.onHandled = async (call: HandledCall) => {
        const handle = current.handle;
        if (cancelled || !handle) return;
        const index = pending.findIndex((s) => s.at(call));
        const step = pending[index];
        if (!step) return;
        pending.splice(index, 1);
        if (stepName === 'transfer' && step.name === 'attach') {
          h.sim.setFaults({ sshStallInputAfterBytes: 2 * MiB });
          const h0 = handle;
          void whenWriting(h, h0).then(async () => {
            cancelled = true;
            await h0.cancel();
          });
          return;
        }
        if (step.name !== stepName) return;
        cancelled = true;
        await handle.cancel();
      };
      const handle = (current.handle = await startRestore(h, { volume: 'data', toVolume, attachTo: 'web-1' }));
      let outcome: 'completed' | 'cancelled';
      try {
        await handle.result();
        outcome = 'completed';
      } catch (err) {
        assert.ok(err instanceof WorkflowFailedError, String(err));
        assert.ok(err.cause instanceof CancelledFailure, `cancelled, not ${err.cause?.message}`);
        outcome = 'cancelled';
      } finally {
        h.sim.onHandled = undefined;
      }
      h.sim.setFaults({});
      assert.ok(cancelled, `the run reached "${stepName}"`);
      await h.sim.waitForIdle(60_000); // an action the cancel caught in flight finishes in the simulator's own time
      assert.deepEqual(ephemeralLeft(h), [], 'nothing ephemeral left');
      const target = h.sim.liveResources().volumes.find((v) => v.name === toVolume);
      if (target) {
        assert.ok(await sameSparseBytes(target.file, expected), `a target that is left is complete (${outcome})`);
      }
      const after = stepName === 'attach to droplet';
      assert.equal(target !== undefined, after, after ? 'verified before the cancel: kept' : 'not verified: deleted');
    });
  }
});
