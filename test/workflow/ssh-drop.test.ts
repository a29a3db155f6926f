import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BackupResult } from '../../workflows/types';
import type { TransferVolumeResult } from '../../activities/transfer/activity';
import { startHarness, type Harness } from '../support/harness';
import { randomData, sameBytes } from '../support/bytes';
import { activityAttempts, activityResults } from '../support/run-checks';

const MiB = 1 << 20;

describe('explore ssh drop', () => {
  let h: Harness;
  let id: string;
  before(async () => {
    h = await startHarness();
    id = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
    for (let i = 0; i < 4; i++) await h.sim.writeVolume(id, i * 200 * MiB, randomData(6 * MiB));
  });
  after(async () => h?.close());
  it('first sync', async () => {
    h.sim.setFaults({ sshDropAfterBytes: 10 * MiB });
    const handle = await h.start();
    const r = (await handle.result()) as BackupResult;
    console.log(r.volumes, h.sim.faults);
    const hist = await handle.fetchHistory();
    console.log(activityAttempts(hist).filter((a) => a.attempt > 1));
    console.log(activityResults<TransferVolumeResult>(hist, 'transferVolume'));
    assert.ok(await sameBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(id)));
  });
  it('repeated', async () => {
    for (let i = 0; i < 4; i++) await h.sim.writeVolume(id, i * 200 * MiB + 20 * MiB, randomData(6 * MiB));
    let rearms = 0;
    h.sim.setFaults({ sshDropAfterBytes: 3 * MiB });
    const timer = setInterval(() => {
      if (h.sim.faults.sshDropAfterBytes === undefined && rearms < 5) {
        rearms++;
        h.sim.setFaults({ sshDropAfterBytes: 3 * MiB });
      }
    }, 2);
    const handle = await h.start();
    const r = (await handle.result()) as BackupResult;
    clearInterval(timer);
    console.log(r.volumes, h.sim.faults, rearms);
    const hist = await handle.fetchHistory();
    console.log(activityAttempts(hist).filter((a) => a.attempt > 1));
    console.log(activityResults<TransferVolumeResult>(hist, 'transferVolume'));
    assert.ok(await sameBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(id)));
  });
  it('incremental', async () => {
    for (let i = 0; i < 4; i++) await h.sim.writeVolume(id, i * 200 * MiB + 50 * MiB, randomData(6 * MiB));
    h.sim.setFaults({ sshDropAfterBytes: 10 * MiB });
    const handle = await h.start();
    const r = (await handle.result()) as BackupResult;
    console.log(r.volumes, h.sim.faults);
    const hist = await handle.fetchHistory();
    console.log(activityAttempts(hist).filter((a) => a.attempt > 1));
    console.log(activityResults<TransferVolumeResult>(hist, 'transferVolume'));
    assert.ok(await sameBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(id)));
  });
});
