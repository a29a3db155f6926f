// The restore activities under MockActivityEnvironment: keys derived on the store worker, heartbeats with the resume
// point, a retried attempt continuing there, cancellation, a stalled droplet, and the failure types the restore
// workflow matches on.
import assert from 'node:assert/strict';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment, type MockActivityEnvironmentOptions } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { Info } from '@temporalio/activity';
import {
  createRestoreTransferActivities,
  type RestoreHeartbeat,
  type RestoreToDeviceInput,
  type RestoreToDeviceResult,
  type RestoreVersionCheck,
} from '../../activities/restore/activity.js';
import { chunkPath, openVersionReader, storePaths } from '../../activities/store/index.js';
import { deriveRunKey } from '../../activities/run-keys.js';
import { filesEqual, startDroplet, tempDir, type Droplet } from '../transfer/helpers.js';
import { BLOCK, TestVolume, rng } from '../store/support.js';
import { FILTER, SWALLOW, blankDevice, inputThrough } from './support.js';

const SECRET = 'a-test-key-secret-of-at-least-32-characters';
const RUN = 'restore-run-1';

let d: Droplet;
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;

before(async () => {
  d = await startDroplet({}, { host: deriveRunKey(SECRET, RUN, 'host'), client: deriveRunKey(SECRET, RUN, 'client') });
  tmp = await tempDir('dosvob-restore-activity-');
});
after(async () => {
  await d.close();
  await tmp.cleanup();
});

const quiet: MockActivityEnvironmentOptions = { logger: new DefaultLogger('ERROR') };
const mockEnv = (info: Partial<Info> = {}) => new MockActivityEnvironment(info, quiet);

async function volume(blocks: number) {
  const v = await TestVolume.create(d, join(tmp.dir, `a${++n}`), blocks * BLOCK);
  const r = await v.sync();
  const device = await blankDevice(join(v.dir, 'target.img'), blocks * BLOCK);
  return { v, versionId: r.versionId!, digest: r.digest, device };
}

function input(versionId: string, device: string, extra: Partial<RestoreToDeviceInput> = {}): RestoreToDeviceInput {
  return {
    storeKey: 'vol1',
    versionId,
    host: d.host,
    port: d.port,
    username: 'root',
    keyRef: RUN,
    clientKeyFingerprint: deriveRunKey(SECRET, RUN, 'client').fingerprint,
    devicePath: device,
    stripes: 1,
    ...extra,
  };
}

function activities(backupsDir: string, coreOptions = {}, keySecret = SECRET) {
  return createRestoreTransferActivities({ backupsDir, keySecret, heartbeatIntervalMs: 100, coreOptions });
}

function failsWith(type: string, nonRetryable: boolean, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, String(err));
    assert.equal(err.type, type, err.message);
    assert.equal(err.nonRetryable, nonRetryable);
    if (message) assert.match(err.message, message);
    return true;
  };
}

void describe('restore activities', { concurrency: false }, () => {
  void test('checkVersionForRestore: the geometry and data of a version; a damaged chunk and an unknown version fail for good', async () => {
    const { v, versionId, digest } = await volume(32);
    await v.mutate(rng(5));
    await v.sync();
    const env = mockEnv({ heartbeatTimeoutMs: 5000 });
    const c = (await env.run(activities(v.backups).checkVersionForRestore, {
      storeKey: 'vol1',
      versionId,
    })) as RestoreVersionCheck;
    assert.equal(c.digest, digest);
    assert.equal(c.blockCount, 32);
    assert.ok(c.dataBlocks > 0 && c.dataBytes === c.dataBlocks * BLOCK);
    assert.ok(c.chunksChecked > 0);
    const r = await openVersionReader(v.backups, 'vol1', versionId);
    let victim = -1;
    for (let i = 0; i < 32 && victim < 0; i++) if (r.source(i) === 'chunk') victim = i;
    const hash = r.manifest.hashes.subarray(victim * 32, victim * 32 + 32).toString('hex');
    await r.close();
    await writeFile(chunkPath(v.backups, hash), Buffer.alloc(BLOCK, 7));
    await assert.rejects(
      mockEnv().run(activities(v.backups).checkVersionForRestore, { storeKey: 'vol1', versionId }),
      failsWith('VersionDamaged', true, new RegExp(`block(s)? ${victim}\\b.*chunk ${hash}`)),
    );
    await assert.rejects(
      mockEnv().run(activities(v.backups).checkVersionForRestore, {
        storeKey: 'vol1',
        versionId: '20200101T000000Z-abcdef',
      }),
      failsWith('VersionNotFound', true),
    );
  });

  void test('heartbeats carry progress and the resume point; a retried attempt continues from them', async () => {
    const { v, versionId, device } = await volume(96);
    const env1 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 1 });
    const beats: RestoreHeartbeat[] = [];
    env1.on('heartbeat', (details: RestoreHeartbeat | undefined) => details && beats.push(details));
    d.faults.dropAfterBytes = 100 + 25 * 5; // about 25 sync acks, then the connection drops
    await assert.rejects(
      env1.run(activities(v.backups, { maxReconnects: 0, syncBytes: 1 }).restoreToDevice, input(versionId, device)),
      failsWith('ConnectionLost', false),
    );
    d.faults.dropAfterBytes = undefined;
    const last = beats.at(-1)!;
    assert.equal(last.phase, 'writing');
    assert.ok(beats.some((b) => b.blocksDone > 0 && b.blocksDone < b.blockCount && b.bytesReceived > 0));
    const nextBlock = last.resume?.nextBlock ?? 0;
    assert.ok(nextBlock > 0, `resume point ${JSON.stringify(last.resume)}`);
    const env2 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 2, heartbeatDetails: last });
    const beats2: RestoreHeartbeat[] = [];
    env2.on('heartbeat', (details: RestoreHeartbeat | undefined) => details && beats2.push(details));
    const r = (await env2.run(
      activities(v.backups).restoreToDevice,
      input(versionId, device),
    )) as RestoreToDeviceResult;
    assert.equal(r.resumed, true);
    assert.equal(r.blocksWritten, last.blockCount - r.resumedBlocks);
    assert.ok(r.resumedBlocks > 0 && r.blocksWritten < last.blockCount);
    assert.equal(r.verifiedBlocks, last.blockCount);
    assert.ok(await filesEqual(device, v.device));
    assert.equal(beats2.at(-1)?.phase, 'verifying');
    assert.equal(beats2.at(-1)?.resume?.nextBlock, r.blockCount);
  });

  void test('cancellation stops within a heartbeat, judged by the blocks written after it', async () => {
    const { v, versionId, device } = await volume(48);
    const env = mockEnv({ heartbeatTimeoutMs: 3000 });
    let cancelledAt = -1;
    let after = 0;
    env.on('heartbeat', (details: RestoreHeartbeat | undefined) => {
      if (!details) return;
      if (cancelledAt >= 0) after = Math.max(after, details.blocksDone);
      else if (details.blocksDone >= 2) {
        cancelledAt = details.blocksDone;
        env.cancel();
      }
    });
    inputThrough(d, `python3 ${FILTER} --rate ${256 * 1024}`);
    try {
      await assert.rejects(
        env.run(activities(v.backups, { syncBytes: 1 }).restoreToDevice, input(versionId, device)),
        (err) => {
          assert.ok(err instanceof CancelledFailure, String(err));
          return true;
        },
      );
    } finally {
      d.faults.wrap = undefined;
    }
    // A few blocks in flight when the cancel came may still be acked; the rest (of ~32) is not sent.
    assert.ok(cancelledAt >= 2 && after <= cancelledAt + 4, `cancelled at ${cancelledAt}, ${after} after`);
  });

  void test('a droplet that stops taking data fails the attempt retryably after the stall limit; the retry resumes', async () => {
    const { v, versionId, device } = await volume(64);
    const marker = join(v.dir, 'stalled');
    // One-shot: the first agent gets ~1 MiB of its input, then nothing (process and connection stay up, no ack
    // comes); later ones get everything.
    inputThrough(d, `python3 ${SWALLOW} --after ${1 << 20} --marker ${marker}`);
    let last: RestoreHeartbeat | undefined;
    try {
      const env1 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 1 });
      env1.on('heartbeat', (details: RestoreHeartbeat | undefined) => (last = details ?? last));
      await assert.rejects(
        env1.run(
          activities(v.backups, { syncBytes: 2 * BLOCK }).restoreToDevice,
          input(versionId, device, { stallTimeoutMs: 3000 }),
        ),
        failsWith('TransferStalled', false, /no data from the droplet for 3 s/),
      );
      assert.equal((await stat(marker)).isFile(), true, 'the stall fired');
      const env2 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 2, heartbeatDetails: last });
      const r = (await env2.run(
        activities(v.backups).restoreToDevice,
        input(versionId, device),
      )) as RestoreToDeviceResult;
      assert.equal(r.resumed, true, `resume point ${JSON.stringify(last?.resume)}`);
      assert.ok(await filesEqual(device, v.device));
    } finally {
      d.faults.wrap = undefined;
    }
  });

  void test('failure types: a device too small, a damaged image block, another key_secret', async () => {
    const { v, versionId, device } = await volume(16);
    const small = await blankDevice(join(v.dir, 'small.img'), 8 * BLOCK);
    await assert.rejects(
      mockEnv().run(activities(v.backups).restoreToDevice, input(versionId, small)),
      failsWith('DeviceTooSmall', true, /has 524288 bytes, the version needs 1048576/),
    );
    const other = 'another-key-secret-of-at-least-32-characters';
    await assert.rejects(
      mockEnv().run(activities(v.backups, {}, other).restoreToDevice, input(versionId, device)),
      (err) => {
        failsWith('KeySecretMismatch', true, /this worker's key_secret differs/)(err);
        assert.ok(!String(err).includes(SECRET) && !String(err).includes(other), 'no secret in the message');
        return true;
      },
    );
    const r = await openVersionReader(v.backups, 'vol1', versionId);
    let victim = -1;
    for (let i = 0; i < 16 && victim < 0; i++) if (r.source(i) === 'image') victim = i;
    await r.close();
    const fh = await open(storePaths(v.backups, 'vol1').image, 'r+');
    await fh.write(Buffer.from('bit rot'), 0, 7, victim * BLOCK + 99);
    await fh.close();
    await assert.rejects(
      mockEnv().run(activities(v.backups).restoreToDevice, input(versionId, device)),
      failsWith('VersionDamaged', true, new RegExp(`block ${victim} `)),
    );
    assert.equal(
      (await readFile(device)).subarray(victim * BLOCK, (victim + 1) * BLOCK).equals(Buffer.alloc(BLOCK)),
      true,
    );
  });
});
