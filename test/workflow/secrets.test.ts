// Exported histories of successful and failed runs hold neither the DigitalOcean token, nor the key
// secret, nor any private key: not through the SDK's export, not through the temporal CLI's.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { rootApplicationFailure } from '../../client/errors';
import { temporalCliPath } from '../../client/temporal-server';
import { deriveRunKey } from '../../activities/run-keys';
import { createWorkers, runWorkers } from '../../worker/worker';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { historyJson } from '../support/history';
import { assertHistoryHasNoSecrets, assertNothingLeft, assertTextHasNoSecrets } from '../support/run-checks';
import { workflowBundle } from '../support/temporal';

const MiB = 1 << 20;

describe('no secrets in exported histories', () => {
  let h: Harness;

  before(async () => {
    h = await startHarness({ inProcessWorkers: false });
    const { id } = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(id, 0, randomData(2 * MiB));
  });
  after(async () => h?.close());

  /** Both exports of the run: the SDK's (historyToJSON) and `temporal workflow show --output json`. */
  async function assertClean(handle: WorkflowHandle, extra: { keySecret?: string; secrets?: string[] } = {}) {
    const secrets = { token: h.config.doToken, keySecret: h.config.keySecret, extra: extra.secrets };
    await assertHistoryHasNoSecrets(handle, secrets);
    if (extra.keySecret) await assertHistoryHasNoSecrets(handle, { ...secrets, keySecret: extra.keySecret });
    const exported = await exportWithCli(handle);
    const { runId } = await handle.describe();
    assertTextHasNoSecrets(exported, runId, secrets);
    if (extra.keySecret) assertTextHasNoSecrets(exported, runId, { ...secrets, keySecret: extra.keySecret });
  }

  async function exportWithCli(handle: WorkflowHandle): Promise<string> {
    const { stdout } = await promisify(execFile)(
      await temporalCliPath(),
      ['workflow', 'show', '--workflow-id', handle.workflowId, '--address', h.address, '--output', 'json'],
      { maxBuffer: 64 << 20 },
    );
    assert.match(stdout, /WorkflowExecutionStarted|EVENT_TYPE_WORKFLOW_EXECUTION_STARTED/, 'the CLI exported it');
    return stdout;
  }

  async function failure(handle: WorkflowHandle): Promise<{ type?: string; message: string }> {
    try {
      await handle.result();
    } catch (err) {
      assert.ok(err instanceof WorkflowFailedError, String(err));
      const app = rootApplicationFailure(err);
      return { type: app?.type ?? undefined, message: app?.message ?? '' };
    }
    throw new Error('the run did not fail');
  }

  it('a run whose transfer cannot log in (the store worker has another key secret)', async () => {
    const otherSecret = randomBytes(32).toString('hex');
    const common = {
      connection: h.native,
      namespace: 'default',
      taskQueue: h.taskQueue,
      workflowBundle: workflowBundle(),
    };
    const workers = [
      ...(await createWorkers({ ...common, config: h.config, role: 'main' })),
      ...(await createWorkers({ ...common, config: { ...h.config, keySecret: otherSecret }, role: 'store' })),
    ];
    const controller = new AbortController();
    const running = runWorkers(workers, controller.signal);
    try {
      const handle = await h.start({ timings: { transferMaximumAttempts: 2 } });
      const { type, message } = await failure(handle);
      assert.equal(type, 'BackupFailed');
      // Refused before it connects: the run key's fingerprint does not match this worker's derivation.
      assert.match(message, /app-data: this worker's key_secret differs from the one that started the run/);
      await assertClean(handle, { keySecret: otherSecret });
      assertNothingLeft(h.sim, ['app-data']);
    } finally {
      controller.abort();
      await running;
    }
  });

  it('a run that cannot create its droplet', async () => {
    await h.startWorkers();
    h.sim.configure({ dropletLimit: 0 });
    try {
      const handle = await h.start();
      const { type, message } = await failure(handle);
      assert.equal(type, 'BackupFailed');
      assert.match(message, /app-data: .*droplet limit/);
      await assertClean(handle);
      assertNothingLeft(h.sim, ['app-data']);
    } finally {
      h.sim.configure({ dropletLimit: 25 });
    }
  });

  let successful: WorkflowHandle | undefined;

  it('a successful run', async () => {
    const handle = await h.start();
    const result = (await handle.result()) as BackupResult;
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    await assertClean(handle);
    successful = handle;
  });

  it('the check catches a leaked token, key secret or private key', async () => {
    assert.ok(successful, 'the successful run ran');
    const handle = successful;
    const history = await historyJson(handle);
    const { runId } = await handle.describe();
    const secrets = { token: h.config.doToken, keySecret: h.config.keySecret };
    assertTextHasNoSecrets(history, runId, secrets);
    const key = deriveRunKey(h.config.keySecret ?? '', runId, 'host').privateKey;
    const body = key.split('\n').slice(1, -2).join('');
    for (const leak of [h.config.doToken, h.config.keySecret ?? '', key, JSON.stringify(key), body.slice(70, 140)]) {
      assert.throws(() => assertTextHasNoSecrets(history + leak, runId, secrets), assert.AssertionError);
    }
  });

  it('a run with a wrong token', async () => {
    const wrong = `dop_v1_${randomBytes(32).toString('hex')}`;
    const original = h.config.doToken;
    await h.stopWorkers();
    Object.assign(h.config, { doToken: wrong });
    await h.startWorkers();
    try {
      const handle = await h.start();
      const { type } = await failure(handle);
      assert.equal(type, 'DigitalOceanAuthError');
      await assertClean(handle, { secrets: [wrong] });
    } finally {
      await h.stopWorkers();
      Object.assign(h.config, { doToken: original });
    }
  });
});
