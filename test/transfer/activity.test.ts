// The transfer activity under MockActivityEnvironment: heartbeats, resume from heartbeat details, cancellation, a
// stalled stream, keys derived on the store worker, and failure types.
import assert from 'node:assert/strict';
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment, type MockActivityEnvironmentOptions } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { Info } from '@temporalio/activity';
import {
  createTransferActivities,
  type TransferHeartbeat,
  type TransferVolumeInput,
  type TransferVolumeResult,
} from '../../activities/transfer/activity.js';
import { storePaths } from '../../activities/store/layout.js';
import { verifyImage } from '../../activities/store/store.js';
import { deriveRunKey } from '../../activities/run-keys.js';
import { MiB, filesEqual, makeDevice, mutateRegion, startDroplet, tempDir, type Droplet } from './helpers.js';

const FILTER = join(__dirname, 'fixtures', 'filter.py');
const STALL = join(__dirname, 'fixtures', 'stall.py');
/** The store worker's key_secret and the run: the droplet presents and accepts the keys derived from them. */
const SECRET = 'a-test-key-secret-of-at-least-32-characters';
const RUN = 'run-1';

let d: Droplet;
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;

before(async () => {
  d = await startDroplet({}, { host: deriveRunKey(SECRET, RUN, 'host'), client: deriveRunKey(SECRET, RUN, 'client') });
  tmp = await tempDir('dosvob-activity-');
});
after(async () => {
  await d.close();
  await tmp.cleanup();
});

async function fixture(sizeBytes: number, fill: (i: number) => 'zero' | 'random') {
  const dir = join(tmp.dir, `a${++n}`);
  await mkdir(dir, { recursive: true });
  const device = join(dir, 'device.img');
  await makeDevice(device, sizeBytes, MiB, fill);
  return { dir, device, backups: join(dir, 'backups') };
}

const quiet: MockActivityEnvironmentOptions = { logger: new DefaultLogger('ERROR') };
const mockEnv = (info: Partial<Info> = {}) => new MockActivityEnvironment(info, quiet);

function input(device: string, extra: Partial<TransferVolumeInput> = {}): TransferVolumeInput {
  return {
    volumeName: 'vol1',
    volumeId: 'vol-id-1',
    sizeBytes: 0, // deliberately wrong: the device's size wins
    snapshotId: 'snap-1',
    snapshotCreatedAt: '2026-11-26T00:00:00Z',
    host: d.host,
    port: d.port,
    username: 'root',
    keyRef: RUN,
    clientKeyFingerprint: deriveRunKey(SECRET, RUN, 'client').fingerprint,
    devicePath: device,
    blockSize: MiB,
    stripes: 1,
    ...extra,
  };
}

function activities(backupsDir: string, coreOptions = {}, keySecret = SECRET) {
  return createTransferActivities({
    backupsDir,
    keySecret,
    heartbeatIntervalMs: 100,
    coreOptions,
  });
}

function throttle(bytesPerSecond: number) {
  d.faults.wrap = (command) => ({
    file: 'sh',
    args: ['-c', `${command} | python3 ${FILTER} --rate ${bytesPerSecond}`],
  });
}

void describe('transfer activity', { concurrency: false }, () => {
  void test('heartbeats carry progress and the resume point; the result reports the transfer', async () => {
    const f = await fixture(16 * MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    const env = mockEnv({ heartbeatTimeoutMs: 5000 });
    const beats: TransferHeartbeat[] = [];
    env.on('heartbeat', (details: TransferHeartbeat | undefined) => details && beats.push(details));
    throttle(16 * MiB);
    try {
      const r = (await env.run(activities(f.backups).transferVolume, input(f.device))) as TransferVolumeResult;
      assert.ok(await filesEqual(f.device, r.imagePath));
      assert.equal(r.sizeBytes, 16 * MiB);
      assert.equal(r.bytesRead, 16 * MiB);
      assert.equal(r.blocksChanged, 8);
      assert.equal(r.zeroBlocks, 8);
      assert.ok(r.bytesOnWire >= 8 * MiB);
      const mid = beats.filter((b) => b.phase === 'transferring' && b.blocksDone > 0 && b.blocksDone < 16);
      assert.ok(mid.length >= 2, `heartbeats during the transfer: ${JSON.stringify(beats.map((b) => b.blocksDone))}`);
      assert.ok(mid.every((b) => b.resume?.snapshotId === 'snap-1' && typeof b.resume.stagingId === 'string'));
      assert.equal(beats.at(-1)?.phase, 'done');
    } finally {
      d.faults.wrap = undefined;
    }
  });

  void test('a retried attempt continues from the heartbeat details', async () => {
    const f = await fixture(32 * MiB, () => 'random');
    const env1 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 1 });
    let last: TransferHeartbeat | undefined;
    env1.on('heartbeat', (details: TransferHeartbeat | undefined) => (last = details ?? last));
    d.faults.dropAfterBytes = 20 * MiB;
    await assert.rejects(
      env1.run(activities(f.backups, { maxReconnects: 0, checkpointBytes: MiB }).transferVolume, input(f.device)),
      (err) => {
        assert.ok(err instanceof ApplicationFailure, String(err));
        assert.equal(err.type, 'ConnectionLost');
        assert.equal(err.nonRetryable, false);
        return true;
      },
    );
    const resumeAt = last?.resume?.stripes[0] ?? 0;
    assert.ok(resumeAt >= 10, `heartbeat resume point ${resumeAt}`);
    const env2 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 2, heartbeatDetails: last });
    const r = (await env2.run(activities(f.backups).transferVolume, input(f.device))) as TransferVolumeResult;
    assert.equal(r.resumed, true);
    assert.ok(r.resumedBlocks >= resumeAt, `resumed ${r.resumedBlocks} blocks, heartbeat said ${resumeAt}`);
    assert.ok(r.bytesOnWire < (32 - resumeAt + 2) * MiB, `second attempt moved ${r.bytesOnWire}`);
    assert.ok(await filesEqual(f.device, r.imagePath));
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
  });

  void test('cancellation stops within a heartbeat interval and leaves the previous image', async () => {
    const f = await fixture(24 * MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    await mockEnv().run(activities(f.backups).transferVolume, input(f.device));
    const previous = join(f.dir, 'previous.img');
    await copyFile(f.device, previous);
    for (let i = 0; i < 24; i++) await mutateRegion(f.device, MiB, i, 'random');
    const env = mockEnv({ heartbeatTimeoutMs: 3000 });
    let cancelled = false;
    let blocksAfterCancel = 0;
    env.on('heartbeat', (details: TransferHeartbeat | undefined) => {
      if (cancelled && details) blocksAfterCancel = Math.max(blocksAfterCancel, details.blocksDone);
      if (!cancelled && details && details.blocksDone >= 2) {
        cancelled = true;
        env.cancel();
      }
    });
    throttle(4 * MiB);
    try {
      await assert.rejects(
        env.run(activities(f.backups).transferVolume, input(f.device, { snapshotId: 'snap-2' })),
        (err) => {
          assert.ok(err instanceof CancelledFailure, String(err));
          return true;
        },
      );
      // Stopped, not run to the end (24 changed blocks): judged by the blocks moved, not by a clock.
      assert.ok(cancelled && blocksAfterCancel < 24, `${blocksAfterCancel} blocks done after the cancel`);
    } finally {
      d.faults.wrap = undefined;
    }
    assert.ok(await filesEqual(previous, storePaths(f.backups, 'vol1').image), 'previous image intact');
    assert.equal((await verifyImage(f.backups, 'vol1')).manifest.header.snapshotId, 'snap-1');
  });

  void test('a droplet that goes silent fails the attempt (retryably) after the stall limit; the retry resumes', async () => {
    const f = await fixture(32 * MiB, () => 'random');
    const marker = join(f.dir, 'stalled');
    // One-shot: the first agent's output stops after 12 MiB (the process stays, the connection stays up and answers
    // SSH keepalives); every later agent passes its output through.
    d.faults.wrap = (command) => ({
      file: 'sh',
      args: ['-c', `${command} | python3 ${STALL} --after ${12 * MiB} --marker ${marker}`],
    });
    let last: TransferHeartbeat | undefined;
    try {
      const env1 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 1 });
      env1.on('heartbeat', (details: TransferHeartbeat | undefined) => (last = details ?? last));
      // The limit only has to exceed an honest pause of a local agent: the stall itself is permanent.
      const stalled = input(f.device, { stallTimeoutMs: 5000 });
      await assert.rejects(env1.run(activities(f.backups, { checkpointBytes: MiB }).transferVolume, stalled), (err) => {
        assert.ok(err instanceof ApplicationFailure, String(err));
        assert.equal(err.type, 'TransferStalled');
        assert.equal(err.nonRetryable, false);
        assert.match(err.message, /no data from the droplet for 5 s/);
        return true;
      });
      assert.equal((await stat(marker)).isFile(), true, 'the stall fired');
      const env2 = mockEnv({ heartbeatTimeoutMs: 5000, attempt: 2, heartbeatDetails: last });
      const r = (await env2.run(activities(f.backups).transferVolume, stalled)) as TransferVolumeResult;
      assert.equal(r.resumed, true);
      // What arrived before the stall was kept (12 MiB sent, less what was in flight).
      assert.ok(r.resumedBlocks >= 8, `resumed ${r.resumedBlocks} blocks`);
      assert.ok(r.bytesOnWire < (32 - r.resumedBlocks + 2) * MiB, `second attempt moved ${r.bytesOnWire}`);
      assert.ok(await filesEqual(f.device, r.imagePath));
      assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
    } finally {
      d.faults.wrap = undefined;
    }
  });

  void test('a store worker with another key_secret fails non-retryably, saying so, before connecting', async () => {
    const f = await fixture(2 * MiB, () => 'random');
    const other = 'another-key-secret-of-at-least-32-characters';
    await assert.rejects(mockEnv().run(activities(f.backups, {}, other).transferVolume, input(f.device)), (err) => {
      assert.ok(err instanceof ApplicationFailure, String(err));
      assert.equal(err.type, 'KeySecretMismatch');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /this worker's key_secret differs from the one that started the run/);
      assert.ok(err.message.includes(deriveRunKey(SECRET, RUN, 'client').fingerprint), err.message);
      assert.ok(!err.message.includes(other) && !err.message.includes(SECRET), 'no secret in the message');
      return true;
    });
    await assert.rejects(stat(storePaths(f.backups, 'vol1').image), { code: 'ENOENT' });
  });

  void test('the host key is derived on the store worker: a host without it is refused, whatever the input says', async () => {
    const f = await fixture(2 * MiB, () => 'random');
    // Accepts the run's client key, but its host key is not the run's: a host someone with access to the namespace
    // could name in a workflow input, along with its key (as inputs of older runs carried one).
    const impostor = await startDroplet({}, { client: deriveRunKey(SECRET, RUN, 'client') });
    try {
      const pointed = {
        ...input(f.device),
        host: impostor.host,
        port: impostor.port,
        hostPublicKey: impostor.hostPublicKey,
      };
      await assert.rejects(mockEnv().run(activities(f.backups).transferVolume, pointed), (err) => {
        assert.ok(err instanceof ApplicationFailure, String(err));
        assert.equal(err.type, 'HostKeyMismatch');
        assert.equal(err.nonRetryable, true);
        return true;
      });
      await assert.rejects(stat(storePaths(f.backups, 'vol1').image), { code: 'ENOENT' });
    } finally {
      await impostor.close();
    }
    // An input of an older run, with the (right) host key in it, still works: the field is ignored.
    const old = { ...input(f.device), hostPublicKey: d.hostPublicKey };
    const r = (await mockEnv().run(activities(f.backups).transferVolume, old)) as TransferVolumeResult;
    assert.ok(await filesEqual(f.device, r.imagePath));
  });
});
