// Crashes while a committed update is finished: every state the commit protocol can be cut off in must be finished
// (or safely dropped) by the next open, and the next sync must work. A crash is an exception thrown from the store's
// step hook: what is on disk at that instant is exactly what a killed process would leave (durability aside, which
// these tests do not claim to check).
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { storePaths } from '../../activities/store/layout.js';
import { readManifest } from '../../activities/store/manifest.js';
import type { CommitRecord } from '../../activities/store/staging.js';
import { VolumeStore, verifyImage, type ApplyStep } from '../../activities/store/store.js';
import { MiB, filesEqual, makeDevice, mutateRegion, sync, dropletFixture } from './helpers.js';

const fx = dropletFixture('dosvob-store-crash-');

class Crash extends Error {
  constructor(readonly at: string) {
    super(`simulated crash at ${at}`);
  }
}

const OPTS = { blockSize: MiB, stripes: 1 } as const;

/** A device and a backups dir holding its first sync (snap-1); then the device changes (8 data records, 1 zeroed). */
async function synced() {
  const dir = fx.dir();
  await mkdir(dir, { recursive: true });
  const device = join(dir, 'device.img');
  await makeDevice(device, 16 * MiB, MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
  const backups = join(dir, 'backups');
  await sync(fx.d, backups, device, OPTS);
  for (let i = 0; i < 16; i += 2) await mutateRegion(device, MiB, i, 'random');
  await mutateRegion(device, MiB, 3, 'zero');
  return { device, backups, paths: storePaths(backups, 'vol1') };
}

/** An incremental sync (snap-2) cut off right after `step`. */
async function crashAfter(f: Awaited<ReturnType<typeof synced>>, step: ApplyStep): Promise<void> {
  await assert.rejects(
    sync(fx.d, f.backups, f.device, {
      ...OPTS,
      snapshotId: 'snap-2',
      hooks: {
        onApplyStep: (s) => {
          if (s === step) throw new Crash(s);
        },
      },
    }),
    (err) => err instanceof Crash && err.at === step,
  );
}

/** After recovery: the image is the device's, its manifest says snap-2 and verifies, and the next sync works. */
async function assertWholeAndUsable(f: Awaited<ReturnType<typeof synced>>): Promise<void> {
  assert.ok(await filesEqual(f.device, f.paths.image), 'the image equals the volume');
  const v = await verifyImage(f.backups, 'vol1');
  assert.equal(v.ok, true, `verify: ${JSON.stringify({ bad: v.badBlocks, size: v.sizeMatches })}`);
  assert.equal(v.manifest.header.snapshotId, 'snap-2');
  await mutateRegion(f.device, MiB, 5, 'random');
  const r = await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-3' });
  assert.equal(r.adopted, false, 'nothing had to be re-hashed');
  assert.equal(r.blocksChanged, 1);
  assert.ok(await filesEqual(f.device, f.paths.image), 'the next sync brought the image up to date');
  assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

void describe('store: crashes while a commit is finished', { concurrency: false }, () => {
  void test('a COMMIT left in a half-removed staging directory (logs gone, manifest advanced) is finished, not fatal', async () => {
    // The state the former order (rename the manifest, then `rm -r staging/`) left when killed inside the rm. Built by
    // hand, so it does not depend on the store's own hooks.
    const f = await synced();
    await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-2' });
    const manifest = await readManifest(f.paths.manifest);
    await mkdir(f.paths.staging, { recursive: true });
    const commit: CommitRecord = {
      formatVersion: 1,
      stagingId: 'a1b2c3d4e5f60718293a4b5c',
      mode: 'inline',
      sizeBytes: manifest.header.sizeBytes,
      blockSize: manifest.header.blockSize,
      stripes: 1,
      touchesImage: true,
      digest: manifest.header.digest,
    };
    await writeFile(f.paths.commit, JSON.stringify(commit));

    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    try {
      assert.equal(store.recovery, 'applied');
      assert.equal(store.manifest?.header.digest, manifest.header.digest);
      assert.equal(store.imageChanged, false);
    } finally {
      await store.release();
    }
    assert.equal(await exists(f.paths.staging), false, 'the staging directory is gone');
    await assertWholeAndUsable(f);
  });

  for (const step of ['image-written', 'manifest-advanced'] as const) {
    void test(`a crash after '${step}' (COMMIT and logs still there) is finished by the next open`, async () => {
      const f = await synced();
      await crashAfter(f, step);
      assert.equal(await exists(f.paths.commit), true, 'the commit record is there');
      assert.equal(await exists(f.paths.stripeLog(0)), true, 'with its log');
      assert.equal(await exists(f.paths.manifestNext), step === 'image-written');
      const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
      try {
        assert.equal(store.recovery, 'applied');
        assert.equal(store.manifest?.header.snapshotId, 'snap-2');
      } finally {
        await store.release();
      }
      assert.equal(await exists(f.paths.staging), false);
      await assertWholeAndUsable(f);
    });
  }

  void test("a crash after 'commit-removed' (COMMIT gone first, logs left) needs nothing but the next sync", async () => {
    const f = await synced();
    await crashAfter(f, 'commit-removed');
    assert.equal(await exists(f.paths.commit), false, 'COMMIT went first');
    assert.equal(await exists(f.paths.stripeLog(0)), true, 'the logs are still there');
    // And killed while `rm -r` was half way: some files of staging/ gone, others not.
    await rm(f.paths.stripeLog(0));
    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    try {
      assert.equal(store.recovery, 'none');
      assert.equal(store.manifest?.header.snapshotId, 'snap-2');
    } finally {
      await store.release();
    }
    await assertWholeAndUsable(f);
  });

  void test('a crash mid-apply whose redo log is then lost drops the update; the next sync re-hashes and repairs', async () => {
    const f = await synced();
    await assert.rejects(
      sync(fx.d, f.backups, f.device, {
        ...OPTS,
        snapshotId: 'snap-2',
        hooks: {
          onApplyRecord: (k) => {
            if (k === 3) throw new Crash('record 3');
          },
        },
      }),
      Crash,
    );
    const imageBefore = await readFile(f.paths.image);
    await rm(f.paths.stripeLog(0));
    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    try {
      assert.equal(store.recovery, 'abandoned');
      assert.match(store.recoveryDetail ?? '', /redo log .* is missing/);
      assert.equal(store.manifest?.header.snapshotId, 'snap-1', 'the previous manifest stays');
      assert.equal(store.imageChanged, true, 'but it is no longer trusted: half the update may be in the image');
    } finally {
      await store.release();
    }
    assert.equal(await exists(f.paths.staging), false);
    assert.ok((await readFile(f.paths.image)).equals(imageBefore), 'recovery wrote nothing into the image');
    const r = await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-2' });
    assert.equal(r.adopted, true, 're-hashed');
    assert.ok(await filesEqual(f.device, f.paths.image));
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
  });
});
