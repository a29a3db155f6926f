import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { freePort, startDevServer, type DevServer } from '../../client/temporal-server';
import type { BackupResult } from '../../workflows/types';
import { startHarness, type Harness } from '../support/harness';
import { randomData, sameBytes } from '../support/bytes';

const MiB = 1 << 20;

describe('explore restart', () => {
  let h: Harness | undefined;
  let server: DevServer | undefined;
  const dir = mkdtempSync(path.join(tmpdir(), 'dosvob-temporal-'));
  after(async () => {
    await h?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  it('restart', async () => {
    const port = await freePort();
    const dbFile = path.join(dir, 'temporal.sqlite');
    const logFile = path.join(dir, 'temporal.log');
    let t = Date.now();
    server = await startDevServer({ port, dbFile, logFile });
    console.log('server up', Date.now() - t);
    h = await startHarness({ address: server.address });
    const id = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
    for (let i = 0; i < 4; i++) await h.sim.writeVolume(id, i * 250 * MiB, randomData(4 * MiB));
    const handle = await h.start();
    for (;;) {
      const { raw } = await handle.describe();
      if (raw.pendingActivities?.some((a) => a.activityType?.name === 'transferVolume')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    t = Date.now();
    await server.stop();
    console.log('stopped', Date.now() - t);
    await new Promise((r) => setTimeout(r, 2000));
    t = Date.now();
    server = await startDevServer({ port, dbFile, logFile });
    console.log('restarted', Date.now() - t);
    t = Date.now();
    const r = (await handle.result()) as BackupResult;
    console.log('result after', Date.now() - t, r.volumes);
    assert.ok(await sameBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(id)));
  });
});
