// A cancel that lands while a create is in flight: the resource appears after the workflow was
// cancelled, and teardown must still delete it. Each create is held at its own look-up (the request it
// makes just before creating) until the workflow has reacted to the cancel. A run that waits for the
// create lets it go on before tearing down. A run that does not tears down at once: its search for the
// resource by name finds nothing, the create is then let go, and (with the deletion the create depends on
// held back until it is through) the resource is left behind.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { createDoApi } from '../../activities/digitalocean/api';
import { rootApplicationFailure } from '../../client/errors';
import type { CreationCounts } from '../simulator/types';
import type { HandledCall } from '../simulator/http-server';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { maybeRecordHistory } from '../support/history';
import { assertEndsCancelled, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { apiCall } from '../support/run-steps';
import { uniqueId } from '../support/temporal';

const MiB = 1 << 20;

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

interface Case {
  activity: 'createDroplet' | 'snapshotVolume' | 'createVolumeFromSnapshot';
  kind: keyof CreationCounts;
  /** The look-up the create makes just before it creates, given the calls handled before. */
  lookup(call: HandledCall, earlier: readonly HandledCall[]): boolean;
  /** The create itself. */
  create: (call: HandledCall) => boolean;
  /** Teardown's search for the resource by name (made only when the run never learned its id). */
  teardownSearch: [method: string, template: string];
  /** A deletion in teardown that would make the create fail (a fault key): it fails until the create is through. */
  dependsOn?: string;
}

const CASES: Case[] = [
  {
    activity: 'createDroplet',
    kind: 'droplets',
    // The sweep lists droplets too, but before the run's key exists.
    lookup: (c, earlier) => apiCall('GET', '/v2/droplets')(c) && earlier.some(apiCall('POST', '/v2/account/keys')),
    create: apiCall('POST', '/v2/droplets'),
    teardownSearch: ['GET', '/v2/droplets'],
    // A droplet is created with the run's key.
    dependsOn: 'DELETE /v2/account/keys/{ssh_key_identifier}',
  },
  {
    activity: 'snapshotVolume',
    kind: 'snapshots',
    lookup: apiCall('GET', '/v2/volumes/{volume_id}/snapshots'),
    create: apiCall('POST', '/v2/volumes/{volume_id}/snapshots'),
    teardownSearch: ['GET', '/v2/snapshots'],
  },
  {
    activity: 'createVolumeFromSnapshot',
    kind: 'volumes',
    // The sweep lists volumes too, but before any snapshot exists.
    lookup: (c, earlier) =>
      apiCall('GET', '/v2/volumes')(c) && earlier.some(apiCall('POST', '/v2/volumes/{volume_id}/snapshots')),
    create: apiCall('POST', '/v2/volumes'),
    // A copy whose id is unknown is deleted by name.
    teardownSearch: ['DELETE', '/v2/volumes'],
    // The copy is made from the run's snapshot.
    dependsOn: 'DELETE /v2/snapshots/{snapshot_id}',
  },
];

/**
 * The run has reacted to its cancellation: it has closed, or it has asked for `activity` to be cancelled and
 * scheduled nothing since (so it is waiting for the create rather than tearing down without it).
 */
function reactedToCancel(history: History, activity: string): boolean {
  const events = history.events ?? [];
  if (
    events.some(
      (e) =>
        e.workflowExecutionCanceledEventAttributes ||
        e.workflowExecutionFailedEventAttributes ||
        e.workflowExecutionCompletedEventAttributes,
    )
  ) {
    return true;
  }
  const scheduled = new Set(
    events
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity)
      .map((e) => String(e.eventId)),
  );
  const cancelAt = events.findIndex((e) => e.workflowExecutionCancelRequestedEventAttributes);
  if (cancelAt < 0) return false;
  const later = events.slice(cancelAt);
  const asked = later.some((e) =>
    scheduled.has(String(e.activityTaskCancelRequestedEventAttributes?.scheduledEventId)),
  );
  return asked && !later.some((e) => e.activityTaskScheduledEventAttributes);
}

async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 50));
}

describe('a cancel during a create', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({
      // Several runs a minute; and a held look-up must not time out on the client's side.
      sim: { sshKeyListPerMinute: 100 },
      config: { apiTimeoutMs: 120_000 },
    });
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(MiB));
  });
  after(async () => h?.close());

  for (const c of CASES) {
    it(`cancelled while ${c.activity} is in flight: what it creates afterwards is deleted too`, async () => {
      const workflowId = uniqueId('cancel-create');
      const created = h.sim.creationCounts()[c.kind];
      const earlier: HandledCall[] = [];
      let held: Promise<void> | undefined;
      const current: { handle?: WorkflowHandle } = {};
      const [searchMethod, searchTemplate] = c.teardownSearch;
      h.sim.onHandled = async (call) => {
        const handle = current.handle;
        const before = [...earlier];
        earlier.push(call);
        if (!handle) return;
        if (c.create(call)) {
          h.sim.setFaults({});
        } else if (!held && c.lookup(call, before)) {
          held = (async () => {
            if (c.dependsOn) h.sim.setFaults({ only: [c.dependsOn], failNextRequests: 1_000_000 });
            const from = h.sim.callLog.length;
            await handle.cancel();
            await until(
              async () =>
                h.sim.callLog.slice(from).some((e) => e.method === searchMethod && e.template === searchTemplate) ||
                reactedToCancel(await handle.fetchHistory(), c.activity),
            );
          })();
          await held;
        }
      };
      const handle = (current.handle = await h.client.workflow.start('backupWorkflow', {
        taskQueue: h.taskQueue,
        workflowId,
        args: [{ singletonId: workflowId, timings: FAST_TIMINGS }],
      }));
      try {
        await assertEndsCancelled(handle);
      } finally {
        h.sim.onHandled = undefined;
      }
      assert.ok(held, `the run reached ${c.activity}`);
      // The create went ahead after the cancel (so the case is the one under test), once; nothing may be left.
      assert.equal(h.sim.creationCounts()[c.kind], created + 1, `${c.activity} created its resource once`);
      assertNothingLeft(h.sim, ['app-data']);
      const history = await assertHistoryHasNoSecrets(handle, {
        token: h.config.doToken,
        keySecret: h.config.keySecret,
      });
      if (c.activity === 'createVolumeFromSnapshot')
        maybeRecordHistory('backup-cancelled-mid-create', workflowId, history);
    });
  }
});

describe('a run that fails while its droplet is being created', () => {
  let h: Harness;
  let volumeId: string;
  before(async () => {
    // One snapshot a volume every 10 minutes, as on DigitalOcean: the run's own snapshot is refused (422).
    h = await startHarness({ sim: { snapshotIntervalMs: 10 * 60_000 }, config: { apiTimeoutMs: 120_000 } });
    volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
  });
  after(async () => h?.close());

  it('waits for the droplet create before its teardown, and deletes the droplet', async () => {
    const do_ = createDoApi({ token: h.sim.token, apiUrl: h.sim.apiUrl });
    const nightly = (await do_.volume.createVolumeSnapshot({ volume_id: volumeId, name: 'nightly' })).data.snapshot;
    const droplet = CASES[0] as Case;
    const earlier: HandledCall[] = [];
    let held: Promise<void> | undefined;
    const current: { handle?: WorkflowHandle } = {};
    h.sim.onHandled = async (call) => {
      const handle = current.handle;
      const before = [...earlier];
      earlier.push(call);
      if (!handle) return;
      if (droplet.create(call)) {
        h.sim.setFaults({});
      } else if (!held && droplet.lookup(call, before)) {
        held = (async () => {
          h.sim.setFaults({ only: [droplet.dependsOn ?? ''], failNextRequests: 1_000_000 });
          const from = h.sim.callLog.length;
          // Teardown has searched for the droplet by name, or has asked its create to stop and waits for it.
          await until(
            async () =>
              h.sim.callLog.slice(from).some((e) => e.method === 'GET' && e.template === '/v2/droplets') ||
              createCancelRequested(await handle.fetchHistory(), droplet.activity),
          );
        })();
        await held;
      }
    };
    const handle = (current.handle = await h.start());
    try {
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError, String(err));
        assert.match(rootApplicationFailure(err)?.message ?? '', /1 of 1 volumes failed: app-data: .*snapshot/);
        return true;
      });
    } finally {
      h.sim.onHandled = undefined;
      h.sim.setFaults({});
    }
    assert.ok(held, 'the droplet create was held');
    assert.equal(h.sim.creationCounts().droplets, 1, 'the droplet was created, once');
    await do_.snapshot.deleteSnapshot({ snapshot_id: String(nightly.id) });
    assertNothingLeft(h.sim, ['app-data']);
  });
});

function createCancelRequested(history: History, activity: string): boolean {
  const events = history.events ?? [];
  const scheduled = new Set(
    events
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity)
      .map((e) => String(e.eventId)),
  );
  return events.some((e) => scheduled.has(String(e.activityTaskCancelRequestedEventAttributes?.scheduledEventId)));
}
