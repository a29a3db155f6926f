// A volume that fails mid-run gives back its copy and snapshot at once, not at the end of the run: they
// cost money and hold one of the droplet's 7 attachments while the other volumes are still going.
// Here one volume's attach errors (every attempt) while the other volume is held back at its copy
// until the failed one has been cleaned up, or until the run is idle with nothing left to do for it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { rootApplicationFailure } from '../../client/errors';
import type { BackupResult } from '../../workflows/types';
import type { CallLogEntry } from '../simulator/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { maybeRecordHistory } from '../support/history';
import { assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { apiCall } from '../support/run-steps';

const MiB = 1 << 20;
const ATTEMPTS = 2;

async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 50));
}

/** The run waits on nothing but `activity`: its last workflow task scheduled nothing more. */
async function idleBut(handle: WorkflowHandle, activity: string): Promise<boolean> {
  const pending = (await handle.describe()).raw.pendingActivities ?? [];
  if (pending.length !== 1 || pending[0]?.activityType?.name !== activity) return false;
  const events = (await handle.fetchHistory()).events ?? [];
  return events[events.length - 1]?.workflowTaskCompletedEventAttributes != null;
}

describe('a volume that fails mid-run', () => {
  let h: Harness;
  const ids: Record<string, string> = {};
  before(async () => {
    // A held request must not time out on the client's side.
    h = await startHarness({ config: { apiTimeoutMs: 120_000 } });
    for (const name of ['bad-data', 'good-data']) {
      ids[name] = (await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 })).id;
      await h.sim.writeVolume(ids[name], 0, randomData(MiB));
    }
  });
  after(async () => h?.close());

  it('has its copy and snapshot deleted as soon as it fails, while the others go on', async () => {
    const log = () => h.sim.callLog;
    const created = (method: string, path: string, name: string) =>
      log().find(
        (e) =>
          e.method === method &&
          e.path === path &&
          e.status < 300 &&
          JSON.stringify(e.requestBody ?? {}).includes(name),
      );
    const badSnapshotId = () =>
      (created('POST', `/v2/volumes/${ids['bad-data']}/snapshots`, 'bad-data')?.responseBody as SnapshotBody)?.snapshot
        ?.id;
    const badCopyId = () => (created('POST', '/v2/volumes', 'bad-data')?.responseBody as VolumeBody)?.volume?.id;

    // Only the failing volume attaches while the other is held, so it takes every errored action.
    h.sim.setFaults({ failNextActions: ATTEMPTS });
    let badReleased!: () => void;
    const badCleanedUp = new Promise<void>((resolve) => (badReleased = resolve));
    let held = false;
    const current: { handle?: WorkflowHandle } = {};
    h.sim.onHandled = async (call) => {
      if (apiCall('DELETE', '/v2/snapshots/{snapshot_id}')(call) && call.params.snapshot_id === badSnapshotId()) {
        badReleased();
      }
      const copyOfGood = apiCall('POST', '/v2/volumes')(call) && JSON.stringify(call.requestBody).includes('good-data');
      if (copyOfGood && !held && current.handle) {
        held = true;
        const handle = current.handle;
        await Promise.race([badCleanedUp, until(() => idleBut(handle, 'createVolumeFromSnapshot'))]);
      }
    };
    const handle = (current.handle = await h.start({ timings: { apiMaximumAttempts: ATTEMPTS } }));
    try {
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError, String(err));
        const app = rootApplicationFailure(err);
        assert.equal(app?.type, 'BackupFailed', app?.message);
        const result = app?.details?.[0] as BackupResult;
        assert.deepEqual(
          result.volumes.map((v) => [v.name, v.ok]),
          [
            ['bad-data', false],
            ['good-data', true],
          ],
        );
        assert.match(result.volumes[0]?.error ?? '', /errored/);
        return true;
      });
    } finally {
      h.sim.onHandled = undefined;
      h.sim.setFaults({});
    }
    assert.ok(held, 'the other volume was held back');

    const at = (match: (e: CallLogEntry) => boolean, what: string) => {
      const i = log().findIndex(match);
      assert.ok(i >= 0, `${what} happened`);
      return i;
    };
    const copyDeleted = at((e) => e.method === 'DELETE' && e.path === `/v2/volumes/${badCopyId()}`, 'copy deleted');
    const snapshotDeleted = at(
      (e) => e.method === 'DELETE' && e.path === `/v2/snapshots/${badSnapshotId()}`,
      'snapshot deleted',
    );
    const goodCopyId = (created('POST', '/v2/volumes', 'good-data')?.responseBody as VolumeBody)?.volume?.id;
    const goodAttached = at(
      (e) => e.method === 'POST' && e.path === `/v2/volumes/${goodCopyId}/actions`,
      'the other volume attached',
    );
    const dropletDeleted = at((e) => e.method === 'DELETE' && e.template === '/v2/droplets/{droplet_id}', 'teardown');
    assert.ok(copyDeleted < snapshotDeleted, 'the copy first, then its snapshot');
    assert.ok(snapshotDeleted < goodAttached, 'both while the other volume was still to be backed up');
    assert.ok(snapshotDeleted < dropletDeleted, "both before the run's teardown");
    assertNothingLeft(h.sim, ['bad-data', 'good-data']);
    maybeRecordHistory(
      'backup-one-volume-failed',
      handle.workflowId,
      await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret }),
    );
  });
});

interface SnapshotBody {
  snapshot?: { id?: string };
}
interface VolumeBody {
  volume?: { id?: string };
}
