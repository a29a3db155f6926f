// A run whose worker is SIGKILLed mid-step and finished by another: its history (the step and the
// workflow task retried on the new worker) replays against the current workflow code. Recorded for the
// replay test with DOSVOB_RECORD_HISTORIES=1. The kill lands when DigitalOcean has attached the copy and
// before the worker hears of it, from the simulator's hook, so it does not depend on the machine's speed.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { maybeRecordHistory } from '../support/history';
import { activityAttempts, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { apiCall } from '../support/run-steps';
import { uniqueId, workflowBundle } from '../support/temporal';

const MiB = 1 << 20;

describe('a run finished by another worker', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(MiB));
  });
  after(async () => h?.close());

  it('killed mid-attach: completes, and its history replays', async () => {
    let worker: ChildProcess = await h.spawnWorker();
    let killed: Promise<void> | undefined;
    h.sim.onHandled = async (call) => {
      if (killed || !apiCall('POST', '/v2/volumes/{volume_id}/actions', 'attach')(call)) return;
      killed = (async () => {
        const exited = new Promise((resolve) => worker.once('exit', resolve));
        worker.kill('SIGKILL');
        await exited;
        worker = await h.spawnWorker();
      })();
      await killed;
    };
    const workflowId = uniqueId('killed');
    const handle = await h.client.workflow.start('backupWorkflow', {
      taskQueue: h.taskQueue,
      workflowId,
      workflowTaskTimeout: '2s',
      args: [
        {
          singletonId: workflowId,
          // A dead worker's step is retried after its heartbeat timeout.
          timings: { ...FAST_TIMINGS, apiStepTimeoutMs: 3_000, apiHeartbeatTimeoutMs: 2_000 },
        },
      ],
    });

    const result = (await handle.result()) as BackupResult;
    h.sim.onHandled = undefined;
    assert.ok(killed, 'the worker was killed');
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    assertNothingLeft(h.sim, ['app-data']);
    const history = await handle.fetchHistory();
    assert.ok(
      activityAttempts(history).some((a) => a.type === 'attachVolume' && a.attempt > 1),
      'the attach was retried after its worker died',
    );
    await Worker.runReplayHistory({ workflowBundle: workflowBundle() }, history, workflowId);
    maybeRecordHistory(
      'backup-worker-killed',
      workflowId,
      await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret }),
    );
  });
});
