// A full run under a faulty API: 10% 5xx (half of them after the operation took effect), bursts of
// 429s and answers slower than the client's timeout. It completes with identical images and nothing
// left behind, without a retry storm: at most twice the API calls of a fault-free run, and never
// over the account's rate limit.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import type { Faults } from '../simulator/types';
import type { BackupResult, Timings } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { sameSparseBytes } from '../support/sparse';
import { startHarness, type Harness } from '../support/harness';
import { activityAttempts, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';

const MiB = 1 << 20;
const VOLUMES = ['app-data', 'db-data'];
/** Low enough that a retry storm would hit it within the run. */
const RATE_LIMIT_PER_MINUTE = 120;
/** The client's timeout: slow faults outlast it; an ordinary answer on one loaded core stays well within it. */
const API_TIMEOUT_MS = 3_000;
/** Polls every 200 ms (not FAST_TIMINGS' 50 ms), so a fault-free run stays well under the rate limit. */
const TIMINGS: Partial<Timings> = { pollIntervalMs: 200, retryInitialIntervalMs: 200, retryMaximumIntervalMs: 1_000 };
const FAULTS: Faults = {
  seed: 20261126,
  serverErrorRate: 0.05,
  lostResponseRate: 0.05,
  serverErrorStatus: 503,
  rateLimitBurst: { every: 25, length: 2, retryAfterSeconds: 1 },
  slowRate: 0.05,
  slowMs: 2 * API_TIMEOUT_MS,
};

const FAULT_KINDS = ['server_error', 'lost_response', 'rate_limit_burst', 'slow'] as const;

interface Run {
  h: Harness;
  handle: WorkflowHandle;
  result: BackupResult;
  ids: Record<string, string>;
}

/** A fresh simulator (its own rate-limit window) and workers; two volumes with a few MB of data. */
async function backUp(faults: Faults | undefined): Promise<Run> {
  const h = await startHarness({
    sim: { rateLimitPerMinute: RATE_LIMIT_PER_MINUTE },
    config: { apiTimeoutMs: API_TIMEOUT_MS },
  });
  try {
    const ids: Record<string, string> = {};
    for (const [i, name] of VOLUMES.entries()) {
      ids[name] = (await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 })).id;
      await h.sim.writeVolume(ids[name], i * 300 * MiB, randomData(2 * MiB));
      await h.sim.writeVolume(ids[name], 1000 * MiB, randomData(MiB));
    }
    if (faults) h.sim.setFaults(faults);
    const handle = await h.start({ timings: TIMINGS });
    const result = (await handle.result()) as BackupResult;
    h.sim.setFaults({});
    return { h, handle, result, ids };
  } catch (err) {
    await h.close();
    throw err;
  }
}

async function assertGoodRun({ h, handle, result, ids }: Run): Promise<void> {
  assert.deepEqual(
    result.volumes.map((v) => [v.name, v.ok, v.error]),
    VOLUMES.map((name) => [name, true, undefined]),
  );
  for (const name of VOLUMES) {
    assert.ok(
      await sameSparseBytes(path.join(h.backupsDir, `${name}.img`), h.sim.volumeFile(ids[name]!)),
      `${name}.img`,
    );
  }
  assertNothingLeft(h.sim, VOLUMES);
  const { droplets, volumes, snapshots, sshKeys } = h.sim.creationCounts();
  assert.deepEqual({ droplets, volumes, snapshots, sshKeys }, { droplets: 1, volumes: 2, snapshots: 2, sshKeys: 1 });
  // The only 429s are the injected bursts: dosvob itself never went over the limit.
  const overLimit = h.sim.callLog.filter((c) => c.status === 429 && c.fault !== 'rate_limit_burst');
  assert.deepEqual(
    overLimit.map((c) => `${c.method} ${c.path}`),
    [],
    'no 429 from the real rate limit',
  );
  await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
}

describe('faults throughout a run', () => {
  let baseline: Promise<number> | undefined;
  /**
   * The API calls of a fault-free run, on a fresh simulator: made by whichever test needs it first, so each test
   * can run alone (DOSVOB_TEST_NAME_PATTERN) and in any order.
   */
  function baselineCalls(): Promise<number> {
    baseline ??= (async () => {
      const run = await backUp(undefined);
      try {
        await assertGoodRun(run);
        return run.h.sim.callLog.length;
      } finally {
        await run.h.close();
      }
    })();
    return baseline;
  }

  it('a fault-free run: the baseline', async () => {
    const calls = await baselineCalls();
    assert.ok(calls > 20, `baseline: ${calls} calls`);
    assert.ok(calls < RATE_LIMIT_PER_MINUTE / 2, `baseline: ${calls} calls`);
  });

  it('10% 5xx, 429 bursts and slow answers: identical images, nothing left, no retry storm', async (t) => {
    const baselineCount = await baselineCalls();
    const run = await backUp(FAULTS);
    try {
      await assertGoodRun(run);
      const log = run.h.sim.callLog;
      const faults = (kind: string) => log.filter((c) => c.fault === kind).length;
      const first = (kind: string) => log.findIndex((c) => c.fault === kind) + 1;
      t.diagnostic(
        `${log.length} calls (baseline ${baselineCount}); faults: ` +
          FAULT_KINDS.map((k) => `${faults(k)} ${k} (first: call ${first(k)})`).join(', '),
      );
      // The faults did happen. (The fault generator is seeded and draws per request: the same sequence of faults
      // comes in the same order, so each kind is there well before the run's last call.)
      for (const kind of FAULT_KINDS) assert.ok(faults(kind) >= 1, `at least one ${kind} fault`);
      assert.ok(log.length <= 2 * baselineCount, `${log.length} API calls, baseline ${baselineCount}`);
      // The history shows the retries, with the reason of the failed attempt.
      const retried = activityAttempts(await run.handle.fetchHistory()).filter((a) => a.attempt > 1);
      assert.ok(retried.length >= 3, `retried activities: ${JSON.stringify(retried)}`);
      assert.ok(
        retried.some((a) => /DigitalOcean answered (503|429|nothing)/.test(a.lastFailure ?? '')),
        `the last failure is recorded: ${JSON.stringify(retried)}`,
      );
    } finally {
      await run.h.close();
    }
  });
});
