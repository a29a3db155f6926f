// Cancelled at each step, a run still deletes everything it created. Terminated (no cleanup runs),
// its leftovers are removed by the next run's sweep, and nothing that is not dosvob's is touched.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { createDoApi } from '../../activities/digitalocean/api';
import { storePaths, verifyImage } from '../../activities/store';
import { EPHEMERAL_TAG } from '../../common/names';
import type { BackupResult, RunProgress } from '../../workflows/types';
import type { HandledCall } from '../simulator/http-server';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { uniqueId } from '../support/temporal';
import { assertEndsCancelled, assertNothingLeft } from '../support/run-checks';
import { contentDigest } from '../support/sparse';
import { STEPS_AFTER_TRANSFER, STEPS_BEFORE_TRANSFER, apiCall } from '../support/run-steps';

const MiB = 1 << 20;

// Cancelled "during" each DigitalOcean step of the run (the transfer has its own test below).
const STEPS: Array<[string, (c: HandledCall) => boolean]> = [...STEPS_BEFORE_TRANSFER, ...STEPS_AFTER_TRANSFER]
  .filter((s) => s.name !== 'delete droplet' && s.name !== 'delete key')
  .map((s) => [s.name, s.at]);

function start(h: Harness): Promise<WorkflowHandle> {
  const workflowId = uniqueId('run');
  return h.client.workflow.start('backupWorkflow', {
    taskQueue: h.taskQueue,
    workflowId,
    args: [{ singletonId: workflowId, timings: FAST_TIMINGS }],
  });
}

function dosvobLeftovers(h: Harness) {
  const live = h.sim.liveResources();
  return {
    droplets: live.droplets.map((d) => d.name),
    volumes: live.volumes.filter((v) => v.tags.includes(EPHEMERAL_TAG)).map((v) => v.name),
    snapshots: live.snapshots.map((s) => s.name),
    sshKeys: live.sshKeys.map((k) => k.name),
  };
}

/** Poll until `ready` holds, at least 100 ms apart, the run still going. */
async function waitWhileRunning(handle: WorkflowHandle, what: string, ready: () => Promise<boolean>): Promise<void> {
  // A bound for failing only: the run gets there in seconds, a loaded machine pinned to one core takes longer.
  const deadline = Date.now() + 120_000;
  for (;;) {
    const started = Date.now();
    if (await ready()) return;
    assert.equal((await handle.describe()).status.name, 'RUNNING', `the run ended before ${what}`);
    assert.ok(Date.now() < deadline, `never ${what}`);
    await new Promise((r) => setTimeout(r, Math.max(0, started + 100 - Date.now())));
  }
}

describe('cancellation', () => {
  let h: Harness;
  before(async () => {
    // A dozen runs in a minute: more SSH-key listings than DigitalOcean's 10 a minute.
    h = await startHarness({ sim: { sshKeyListPerMinute: 100 } });
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(4 * MiB));
  });
  after(async () => h?.close());

  for (const [step, at] of STEPS) {
    it(`cancelled during "${step}": the run ends cancelled and leaves nothing`, async () => {
      const current: { handle?: WorkflowHandle } = {};
      let cancelled = false;
      h.sim.onHandled = async (call) => {
        if (cancelled || !current.handle || !at(call)) return;
        cancelled = true;
        await current.handle.cancel();
      };
      const handle = (current.handle = await start(h));
      try {
        await assertEndsCancelled(handle);
      } finally {
        h.sim.onHandled = undefined;
      }
      assert.ok(cancelled, `the run reached "${step}"`);
      assertNothingLeft(h.sim, ['app-data']);
      const progress = await handle.query<RunProgress>('progress');
      assert.equal(progress.phase, 'finished');
    });
  }
});

describe('cancellation during the transfer', () => {
  let h: Harness;
  let volumeId: string;
  before(async () => {
    h = await startHarness();
    volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
  });
  after(async () => h?.close());

  it('cancelled mid-transfer: the run ends cancelled, leaves nothing, and the previous image is intact', async () => {
    await h.sim.writeVolume(volumeId, 0, randomData(4 * MiB));
    const previous = await h.run();
    assert.ok(previous.volumes[0]?.ok, previous.volumes[0]?.error);
    const image = path.join(h.backupsDir, 'app-data.img');
    const before = await contentDigest(image);

    // New data, and a droplet whose stream stalls after 2 MiB of it: the transfer is caught half done on any
    // machine, running, with part of the new bytes staged, when the cancel comes.
    await h.sim.writeVolume(volumeId, 0, randomData(16 * MiB));
    h.sim.setFaults({ sshStallAfterBytes: 2 * MiB });
    const handle = await h.start();
    const staging = storePaths(h.backupsDir, 'app-data');
    await waitWhileRunning(handle, 'the transfer stalled half done', async () => {
      const { raw } = await handle.describe();
      const transfer = raw.pendingActivities?.find((a) => a.activityType?.name === 'transferVolume');
      return (
        transfer !== undefined &&
        h.sim.faults.sshStallAfterBytes === undefined &&
        existsSync(staging.stripeLog(0)) &&
        statSync(staging.stripeLog(0)).size > MiB
      );
    });
    assert.ok(existsSync(staging.plan), 'the half-done transfer is staged');

    await handle.cancel();
    await assertEndsCancelled(handle);
    h.sim.setFaults({});
    assertNothingLeft(h.sim, ['app-data']);
    assert.equal(await contentDigest(image), before, 'the previous image has the same bytes');
    const { ok, badBlocks, manifestIntact } = await verifyImage(h.backupsDir, 'app-data');
    assert.ok(ok, `the previous image matches its manifest: ${JSON.stringify({ badBlocks, manifestIntact })}`);
  });
});

describe('termination', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(2 * MiB));
  });
  after(async () => h?.close());

  it("a terminated run's leftovers are swept by the next run; decoys that are not dosvob's survive", async () => {
    // Terminate once the copy is attached: droplet, key, snapshot and copy volume all exist.
    const current: { handle?: WorkflowHandle } = {};
    let terminated: Promise<unknown> | undefined;
    h.sim.onHandled = (call) => {
      if (!terminated && current.handle && apiCall('POST', '/v2/volumes/{volume_id}/actions', 'attach')(call)) {
        terminated = current.handle.terminate('test: simulating a run killed without cleanup');
      }
    };
    const handle = (current.handle = await start(h));
    await assert.rejects(handle.result(), WorkflowFailedError);
    await terminated;
    h.sim.onHandled = undefined;
    const left = dosvobLeftovers(h);
    assert.equal(left.droplets.length, 1, 'the terminated run left its droplet');
    assert.equal(left.volumes.length, 1, 'and its copy volume');
    assert.equal(left.snapshots.length, 1, 'and its snapshot');
    assert.equal(left.sshKeys.length, 1, 'and its key');

    // Decoys: the prefix without the tag, the tag without the prefix, a user snapshot.
    const do_ = createDoApi({ token: h.sim.token, apiUrl: h.sim.apiUrl });
    const decoyVolume = await h.sim.createVolume({ name: 'dosvob-ephemeral-data', region: 'nyc3', sizeGigabytes: 1 });
    const decoyDroplet = (
      await do_.droplet.createDroplet({
        name: 'web-1',
        region: 'nyc3',
        size: 's-1vcpu-1gb',
        image: 'debian-12-x64',
        tags: [EPHEMERAL_TAG],
      })
    ).data.droplet;
    const source = h.sim.liveResources().volumes.find((v) => v.name === 'app-data');
    const userSnapshot = (await do_.volume.createVolumeSnapshot({ volume_id: source?.id ?? '', name: 'nightly' })).data
      .snapshot;

    const next = await start(h);
    const result = (await next.result()) as BackupResult;
    assert.ok(
      result.volumes.every((v) => v.ok),
      JSON.stringify(result.volumes),
    );
    assert.equal(result.swept.length, 4, `swept: ${result.swept.join(', ')}`);
    const live = h.sim.liveResources();
    assert.deepEqual(
      live.droplets.map((d) => d.id),
      [decoyDroplet.id],
      'only the decoy droplet remains',
    );
    assert.deepEqual(
      live.snapshots.map((s) => s.id),
      [userSnapshot.id],
      'only the user snapshot remains',
    );
    assert.deepEqual(
      live.volumes.map((v) => v.name).sort(),
      ['app-data', 'dosvob-ephemeral-data'],
      'the user volumes remain',
    );
    assert.ok(live.volumes.some((v) => v.id === decoyVolume.id));
    assert.deepEqual(live.sshKeys, []);
  });
});
