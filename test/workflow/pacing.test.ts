// dosvob paces itself from the rate-limit headers: with a small per-minute limit of which another
// client of the same token spends five sixths, a run of two volumes completes, identical images, nothing
// left behind, and not one of dosvob's own requests is answered 429. (Unpaced, dosvob's polls alone
// would ask for several hundred requests a minute, and the same run gets 429s.)
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setPacerDefaults } from '../../activities/digitalocean/pacer';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { startHarness, type Harness } from '../support/harness';
import { assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;
const VOLUMES = ['pace-a', 'pace-b'];
const PER_MINUTE = 240;
/** The other tool's share: five sixths of the limit, leaving dosvob 40 a minute (less its reserve). */
const BACKGROUND_PER_MINUTE = 200;

/** Another tool on the same token: a GET every 60/perMinute seconds until stopped. */
function backgroundClient(h: Harness, perMinute: number): { stop: () => void; statuses: number[] } {
  const statuses: number[] = [];
  const timer = setInterval(() => {
    fetch(`${h.sim.apiUrl}/v2/account`, {
      headers: { authorization: `Bearer ${h.sim.token}`, 'user-agent': 'othertool/1.0' },
    }).then(
      (r) => void statuses.push(r.status),
      () => void statuses.push(0),
    );
  }, 60_000 / perMinute);
  return { stop: () => clearInterval(timer), statuses };
}

void describe('pacing from the rate-limit headers', () => {
  let h: Harness;
  before(async () => {
    // The simulator's limit is not DigitalOcean's 250: the pacers of this process are told so.
    setPacerDefaults({ perMinute: PER_MINUTE });
    h = await startHarness({ sim: { rateLimitPerMinute: PER_MINUTE, rateLimitPerHour: 100_000 } });
  });
  after(async () => {
    await h.close();
    setPacerDefaults({});
  });

  void it('keeps dosvob under the limit a background client mostly spends: no 429 of its own', async () => {
    const ids: Record<string, string> = {};
    for (const [i, name] of VOLUMES.entries()) {
      ids[name] = (await h.sim.createVolume({ name, region: 'nyc3', sizeGigabytes: 1 })).id;
      await h.sim.writeVolume(ids[name], i * 100 * MiB, randomData(MiB));
    }
    const background = backgroundClient(h, BACKGROUND_PER_MINUTE);
    let result: BackupResult;
    try {
      // dosvob starts once the other tool has filled a minute's window (a count, with a deadline only as a bound).
      const deadline = Date.now() + 300_000;
      while (background.statuses.length < BACKGROUND_PER_MINUTE && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(background.statuses.length >= BACKGROUND_PER_MINUTE, 'the other tool filled its minute');
      // FAST_TIMINGS' 50 ms polls would ask for 1,200 requests a minute: only pacing keeps them inside the limit.
      result = await h.run({ timings: { apiStepTimeoutMs: 180_000, dropletReadyTimeoutMs: 180_000 } });
    } finally {
      background.stop();
    }
    assert.deepEqual(
      result.volumes.map((v) => [v.name, v.ok]),
      VOLUMES.map((name) => [name, true]),
    );
    for (const name of VOLUMES) {
      assert.ok(await sameSparseBytes(path.join(h.backupsDir, `${name}.img`), h.sim.volumeFile(ids[name]!)), name);
    }
    assertNothingLeft(h.sim, VOLUMES);
    const clients = h.sim.callsByClient();
    console.log(`# requests and 429s by client: ${JSON.stringify(clients)}`);
    assert.ok((clients.dosvob?.requests ?? 0) > 20, 'dosvob made its requests under its own User-Agent');
    assert.ok((clients.othertool?.requests ?? 0) > BACKGROUND_PER_MINUTE, 'the background client ran alongside');
    assert.equal(clients.dosvob?.rateLimited, 0, "no 429 answered to dosvob's own requests");
  });
});
