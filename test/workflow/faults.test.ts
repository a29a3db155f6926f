import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { BackupResult } from '../../workflows/types';
import { startHarness, type Harness } from '../support/harness';
import { randomData } from '../support/bytes';

const MiB = 1 << 20;

async function one(faulty: boolean) {
  const h = await startHarness({ sim: { rateLimitPerMinute: 120, seed: 7 }, config: { apiTimeoutMs: 1000 } });
  try {
    const v = await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 });
    const w = await h.sim.createVolume({ name: 'db', region: 'nyc3', sizeGigabytes: 1 });
    await h.sim.writeVolume(v.id, 0, randomData(3 * MiB));
    await h.sim.writeVolume(w.id, 100 * MiB, randomData(3 * MiB));
    if (faulty)
      h.sim.setFaults({
        seed: 1,
        serverErrorRate: 0.1,
        rateLimitBurst: { every: 40, length: 3, retryAfterSeconds: 1 },
        slowRate: 0.05,
        slowMs: 1500,
      });
    const t0 = Date.now();
    const handle = await h.start({ timings: { pollIntervalMs: 200 } });
    const r = (await handle.result().catch((e) => {
      console.log(e);
      throw e;
    })) as BackupResult;
    console.log('took', Date.now() - t0, r.message, h.sim.callLog.length);
    console.log(h.sim.callCounts());
    console.log(
      h.sim.callLog
        .filter((c) => c.fault || c.status >= 400)
        .map((c) => `${c.method} ${c.template} ${c.status} ${c.fault ?? ''}`),
    );
    assert.ok(r.volumes.every((x) => x.ok));
  } finally {
    await h.close();
  }
}
describe('explore', () => {
  it('fault-free', async () => one(false));
  it('faulty', async () => one(true));
});
