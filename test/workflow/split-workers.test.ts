// Split workers (`--role main` here, `--role store` there) whose key secrets differ: the store worker cannot derive the
// run's SSH keys. The transfer says so at once, in words, without retrying, and the run cleans up as any failed run.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { rootApplicationFailure } from '../../client/errors';
import { createWorkers, runWorkers } from '../../worker/worker';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { activityAttempts, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { workflowBundle } from '../support/temporal';

const MiB = 1 << 20;

describe('split workers with different key secrets', () => {
  let h: Harness;
  let workers: Worker[] = [];
  let running: Promise<void> | undefined;
  const storeSecret = randomBytes(32).toString('hex');

  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    const volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
    await h.sim.writeVolume(volumeId, 0, randomData(2 * MiB));
    const common = {
      connection: h.native,
      namespace: 'default',
      taskQueue: h.taskQueue,
      options: { shutdownGraceTime: '1s' },
    };
    workers = [
      ...(await createWorkers({ ...common, config: h.config, role: 'main', workflowBundle: workflowBundle() })),
      ...(await createWorkers({ ...common, config: { ...h.config, keySecret: storeSecret }, role: 'store' })),
    ];
    running = runWorkers(workers);
  });
  after(async () => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    await running;
    await h?.close();
  });

  it("the transfer fails non-retryably: this worker's key_secret differs from the one that started the run", async () => {
    const handle = await h.start();
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError, String(err));
      const app = rootApplicationFailure(err);
      assert.equal(app?.type, 'BackupFailed');
      const result = app?.details?.[0] as BackupResult;
      assert.equal(result.volumes[0]?.ok, false);
      assert.match(
        result.volumes[0]?.error ?? '',
        /this worker's key_secret differs from the one that started the run/,
      );
      return true;
    });
    const attempts = activityAttempts(await handle.fetchHistory()).filter((a) => a.type === 'transferVolume');
    assert.deepEqual(
      attempts.map((a) => a.attempt),
      [1],
      'not retried',
    );
    assertNothingLeft(h.sim, ['app-data']);
    await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
    await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: storeSecret });
  });
});
