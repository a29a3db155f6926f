// `dosvob cleanup` as a workflow: after a terminated run (which runs no cleanup of its own) it removes the leftovers
// through the backup's own activities, whose retries under DigitalOcean 5xx answers are in the run's history; it is a
// run like any other (web UI summary and details, `status`, `runs`), one at a time with backups; decoys survive.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import type { CleanupOutcome } from '../../client/commands/cleanup';
import type { Status } from '../../client/commands/status';
import type { RunSummary } from '../../client/runs';
import { createDoApi } from '../../activities/digitalocean/api';
import { EPHEMERAL_TAG, installationTag } from '../../common/names';
import type { BackupResult } from '../../workflows/types';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { activityAttempts } from '../support/run-checks';
import { uniqueId } from '../support/temporal';
import { cli, cliEnv, parseJson, startFakeStore, waitFor } from './support';

const SIM = { rateLimitPerMinute: 1_000_000, rateLimitPerHour: 10_000_000, sshKeyListPerMinute: 1_000_000 };

describe('dosvob cleanup (a workflow)', () => {
  let h: Harness;
  let env: Record<string, string>;
  let store: Awaited<ReturnType<typeof startFakeStore>>;

  before(async () => {
    h = await startHarness({ sim: SIM });
    await h.sim.createVolume({ name: 'db-data', region: 'nyc3', sizeGigabytes: 1 });
    env = cliEnv(h);
    store = await startFakeStore(h);
  });
  after(async () => {
    await store?.close();
    await h?.close();
  });

  it("removes a terminated run's leftovers with retried activities, one at a time with backups; decoys survive", async () => {
    // A run terminated mid-transfer: its droplet, key, snapshot and attached copy are left behind.
    store.mode = 'hold';
    const started = parseJson<{ runId: string }>(await cli(['sync', '--detach', '--json'], env));
    await waitFor('the run to reach its transfer', async () => {
      const s = parseJson<Status>(await cli(['status', '--json'], env));
      return s.running && s.progress?.volumes[0]?.step === 'transfer';
    });
    await h.client.workflow.getHandle(env.DOSVOB_WORKFLOW_ID!, started.runId).terminate('test: killed without cleanup');
    const left = h.sim.resourcesByPrefix('dosvob-ephemeral-');
    assert.equal(left.droplets.length + left.volumes.length + left.snapshots.length + left.sshKeys.length, 4);

    // Decoys: the prefix without the tag, the tag without the prefix, another installation's fresh resources.
    const api = createDoApi({ token: h.sim.token, apiUrl: h.sim.apiUrl });
    const decoys = [
      (await h.sim.createVolume({ name: 'dosvob-ephemeral-data', region: 'nyc3', sizeGigabytes: 1 })).name,
      (
        await h.sim.createVolume({
          name: 'dosvob-ephemeral-elsewhere-0123456789-db-data',
          region: 'nyc3',
          sizeGigabytes: 1,
          tags: [EPHEMERAL_TAG, installationTag('elsewhere')],
        })
      ).name,
      (
        await api.droplet.createDroplet({
          name: 'web-1',
          region: 'nyc3',
          size: 's-1vcpu-1gb',
          image: 'debian-12-x64',
          tags: [EPHEMERAL_TAG],
        })
      ).data.droplet.name,
      (
        await api.droplet.createDroplet({
          name: 'dosvob-ephemeral-elsewhere-0123456789-nyc3',
          region: 'nyc3',
          size: 's-1vcpu-1gb',
          image: 'debian-12-x64',
          tags: [EPHEMERAL_TAG, installationTag('elsewhere')],
        })
      ).data.droplet.name,
    ];

    // DigitalOcean answers the first four deletions with 500s: retried by the activity's retry policy.
    h.sim.setFaults({ failNextRequests: 4, only: ['DELETE /v2/droplets/{droplet_id}'] });
    // And holds the successful droplet deletion, so the cleanup run is seen in progress on a machine of any speed.
    let reached!: () => void;
    let release!: () => void;
    const atDeletion = new Promise<void>((r) => (reached = r));
    const held = new Promise<void>((r) => (release = r));
    h.sim.onHandled = async (call) => {
      if (call.method === 'DELETE' && call.template === '/v2/droplets/{droplet_id}' && call.status < 300) {
        reached();
        await held;
      }
    };
    const running = cli(['cleanup', '--json'], env);
    let syncing: ReturnType<typeof cli> | undefined;
    await atDeletion;
    try {
      const status = parseJson<Status>(await cli(['status', '--json'], env));
      assert.ok(status.running && status.kind === 'cleanup', JSON.stringify(status));
      // A scheduled start meanwhile is skipped, exactly as beside a backup run.
      const launched = await h.client.workflow.start('backupWorkflow', {
        taskQueue: h.taskQueue,
        workflowId: uniqueId('dosvob-scheduled'),
        args: [{ singletonId: env.DOSVOB_WORKFLOW_ID, timings: FAST_TIMINGS }],
      });
      assert.equal(((await launched.result()) as BackupResult).skipped, true);
      // `dosvob sync` meanwhile waits for the cleanup, then starts its backup.
      store.mode = 'run';
      syncing = cli(['sync', '--detach'], env);
      await waitFor('sync to wait for the cleanup', async () =>
        /a cleanup run is in progress \(\S+\); waiting for it to end/.test(syncing?.stdoutSoFar() ?? ''),
      );
    } finally {
      release();
    }
    const r = await running;
    const synced = await syncing;
    assert.equal(synced?.code, 0, synced?.stderr);
    const backupRunId = /^started backup run (\S+)$/m.exec(synced?.stdout ?? '')?.[1];
    assert.ok(backupRunId, synced?.stdout);
    const backup = (await h.client.workflow.getHandle(env.DOSVOB_WORKFLOW_ID!, backupRunId).result()) as BackupResult;
    assert.ok(backup.volumes.every((v) => v.ok));
    h.sim.onHandled = undefined;
    h.sim.setFaults({});
    assert.equal(r.code, 0, r.stderr);
    const outcome = parseJson<CleanupOutcome>(r);
    assert.deepEqual(
      outcome.leftovers.map((l) => `${l.kind} ${l.deleted}`),
      ['droplet true', 'volume true', 'snapshot true', 'ssh_key true'],
    );
    const live = h.sim.liveResources();
    assert.deepEqual(
      [...live.droplets.map((d) => d.name), ...live.volumes.map((v) => v.name)].sort(),
      [...decoys, 'db-data'].sort(),
      'the decoys and the source survive',
    );
    assert.deepEqual(live.snapshots, []);
    assert.deepEqual(live.sshKeys, []);

    // The cleanup run: its history shows the retries; it reads in the web UI like any run.
    const handle = h.client.workflow.getHandle(env.DOSVOB_WORKFLOW_ID!, outcome.runId);
    const description = await handle.describe();
    assert.equal(description.type, 'cleanupWorkflow');
    assert.equal(await description.staticSummary(), 'dosvob cleanup: delete the leftovers of earlier runs');
    const history = await handle.fetchHistory();
    const deletions = activityAttempts(history).filter((a) => a.type === 'deleteResource');
    assert.equal(deletions.length, 4);
    const retried = deletions.find((a) => a.attempt > 1);
    assert.equal(retried?.attempt, 5, 'the droplet deletion succeeded on its fifth attempt');
    assert.match(retried?.lastFailure ?? '', /500/);
    const summaries = (history.events ?? []).flatMap((e) => {
      const summary = e.activityTaskScheduledEventAttributes ? e.userMetadata?.summary : undefined;
      return summary ? [defaultPayloadConverter.fromPayload<string>(summary)] : [];
    });
    assert.ok(summaries.includes('find leftovers of earlier runs'), summaries.join(', '));
    assert.ok(
      summaries.some((s) => /^delete droplet dosvob-ephemeral-/.test(s)),
      summaries.join(', '),
    );
    const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    assert.match(metadata.currentDetails ?? '', /finished.*deleted 4 leftover\(s\)/);

    // `dosvob runs` lists it among the backups (the skipped scheduled start and the waiting sync's run too); the next
    // cleanup has nothing to do.
    const runs = parseJson<RunSummary[]>(await cli(['runs', '--json'], env));
    assert.deepEqual(
      runs.map((x) => `${x.kind} ${x.outcome}`),
      ['backup ok', 'backup skipped', 'cleanup ok', 'backup terminated'],
    );
    const again = await cli(['cleanup'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /no leftovers of earlier runs/);
  });
});
