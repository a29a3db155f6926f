// The Temporal server goes away mid-run and comes back on the same address with the same SQLite
// file: the run continues from its persisted history and completes, with the workers that were
// running all along (they reconnect by themselves), an identical image and nothing left behind.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { freePort, isListening, startDevServer, type DevServer } from '../../client/temporal-server';
import type { BackupResult } from '../../workflows/types';
import { randomData } from '../support/bytes';
import { FAST_TIMINGS, startHarness, type Harness } from '../support/harness';
import { activityAttempts, assertHistoryHasNoSecrets, assertNothingLeft } from '../support/run-checks';
import { sameSparseBytes } from '../support/sparse';

const MiB = 1 << 20;
/** Longer than the transfer's heartbeat timeout: a transfer that ends while the server is away is retried. */
const DOWN_MS = (FAST_TIMINGS.transferHeartbeatTimeoutMs ?? 5_000) + 3_000;

const millis = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  Number(t?.seconds ?? 0) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);

describe('the Temporal server restarted mid-run', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dosvob-temporal-'));
  let server: DevServer | undefined;
  let h: Harness | undefined;

  after(async () => {
    await h?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the run continues from the persisted history and completes', async (t) => {
    // A fixed port, so the server comes back at the address the workers know.
    const port = await freePort();
    const db = { port, dbFile: path.join(dir, 'temporal.sqlite'), logFile: path.join(dir, 'temporal.log') };
    server = await startDevServer(db);
    h = await startHarness({ address: server.address });
    const volumeId = (await h.sim.createVolume({ name: 'app-data', region: 'nyc3', sizeGigabytes: 1 })).id;
    for (let i = 0; i < 4; i++) await h.sim.writeVolume(volumeId, i * 250 * MiB, randomData(4 * MiB));

    const handle = await h.start();
    for (;;) {
      const { raw } = await handle.describe();
      if (raw.pendingActivities?.some((a) => a.activityType?.name === 'transferVolume')) break;
      await sleep(50);
    }
    const stoppedAt = Date.now();
    await server.stop();
    assert.equal(await isListening('127.0.0.1', port), false, 'the server is gone');
    await sleep(DOWN_MS);
    const restartedAt = Date.now();
    server = await startDevServer(db);
    t.diagnostic(`server away for ${restartedAt - stoppedAt} ms`);

    const result = (await handle.result()) as BackupResult;
    assert.ok(result.volumes[0]?.ok, result.volumes[0]?.error);
    assert.ok(await sameSparseBytes(path.join(h.backupsDir, 'app-data.img'), h.sim.volumeFile(volumeId)), 'identical');
    assertNothingLeft(h.sim, ['app-data']);
    const created = h.sim.creationCounts();
    assert.deepEqual(
      [created.droplets, created.volumes, created.snapshots, created.sshKeys],
      [1, 1, 1, 1],
      'nothing was created twice',
    );

    // One run, whose history spans the restart: it was kept, not started over.
    assert.equal((await handle.describe()).runId, handle.firstExecutionRunId, 'the same run');
    const events = (await handle.fetchHistory()).events ?? [];
    const times = events.map((e) => millis(e.eventTime));
    assert.equal(events[0]?.workflowExecutionStartedEventAttributes ? 1 : 0, 1, 'the history starts at the start');
    assert.ok(times.filter((x) => x < stoppedAt).length > 10, 'events from before the restart');
    assert.ok(times.filter((x) => x > restartedAt).length > 5, 'events from after the restart');
    assert.ok(events.at(-1)?.workflowExecutionCompletedEventAttributes, 'completed');
    const transfer = activityAttempts({ events }).find((a) => a.type === 'transferVolume');
    t.diagnostic(`the transfer finished in attempt ${transfer?.attempt} (${transfer?.lastFailure ?? 'no failure'})`);
    await assertHistoryHasNoSecrets(handle, { token: h.config.doToken, keySecret: h.config.keySecret });
  });
});
