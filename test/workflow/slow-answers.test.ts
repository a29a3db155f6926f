// A DigitalOcean answer slower than the step's heartbeat timeout (but within the request timeout and
// the step's timeout) is waited for, not taken for a dead worker: the step completes on its first
// attempt. The slow calls are a plain one (the token check) and a create (the copy volume).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BackupResult, Timings } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { activityAttempts, assertNothingLeft } from '../support/run-checks';

const MiB = 1 << 20;
/** Over twice the workers' heartbeat throttle (2 s), so a step that does heartbeat keeps a wide margin. */
const HEARTBEAT_TIMEOUT_MS = 5_000;
const SLOW_MS = 2 * HEARTBEAT_TIMEOUT_MS;
const TIMINGS: Partial<Timings> = { apiHeartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, apiStepTimeoutMs: 10 * SLOW_MS };
const SLOW = ['GET /v2/account', 'POST /v2/volumes'];

describe('a slow DigitalOcean answer', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ config: { apiTimeoutMs: 10 * SLOW_MS } });
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(MiB));
  });
  after(async () => h?.close());

  it('longer than the heartbeat timeout: the step completes on its first attempt', async () => {
    h.sim.setFaults({ only: SLOW, slowRate: 1, slowMs: SLOW_MS });
    const handle = await h.start({ timings: TIMINGS });
    const result = (await handle.result()) as BackupResult;
    h.sim.setFaults({});
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    const slow = h.sim.callLog.filter((c) => SLOW.includes(`${c.method} ${c.template}`));
    assert.deepEqual(
      slow.map((c) => [`${c.method} ${c.template}`, c.fault]),
      SLOW.map((s) => [s, 'slow']),
      'each slow call was made once, and answered slowly',
    );
    const attempts = activityAttempts(await handle.fetchHistory()).filter(
      (a) => a.type === 'checkAccess' || a.type === 'createVolumeFromSnapshot',
    );
    assert.deepEqual(
      attempts.map((a) => [a.type, a.attempt]),
      [
        ['checkAccess', 1],
        ['createVolumeFromSnapshot', 1],
      ],
    );
    assertNothingLeft(h.sim, ['app-data']);
  });
});
