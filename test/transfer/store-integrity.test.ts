// Damage on the local disk: a manifest that fails its digest, staged data that fails its SHA-256 on the way into the
// image, and names dosvob does not use. None may stop the listing or wedge a volume; each must end in a correct image.
import assert from 'node:assert/strict';
import { mkdir, open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { RedoLogDamagedError } from '../../activities/store/errors.js';
import { inspectImages } from '../../activities/store/inspect.js';
import { storePaths } from '../../activities/store/layout.js';
import { scanStripeLog, type CommitRecord, type LogRecord } from '../../activities/store/staging.js';
import { VolumeStore, verifyImage } from '../../activities/store/store.js';
import { MiB, filesEqual, makeDevice, mutateRegion, sync, dropletFixture } from './helpers.js';

const fx = dropletFixture('dosvob-store-integrity-');

const OPTS = { blockSize: MiB, stripes: 1 } as const;

async function fixture(volumeName = 'vol1') {
  const dir = fx.dir();
  await mkdir(dir, { recursive: true });
  const device = join(dir, `${volumeName}.device`);
  await makeDevice(device, 12 * MiB, MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
  return { dir, device, backups: join(dir, 'backups'), paths: storePaths(join(dir, 'backups'), volumeName) };
}

async function flipByte(path: string, offset: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    await fh.write(Buffer.from([b[0]! ^ 0x01]), 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/** The data records of a committed update's log. */
async function dataRecords(paths: ReturnType<typeof storePaths>): Promise<Extract<LogRecord, { type: 'D' }>[]> {
  const commit = JSON.parse(await readFile(paths.commit, 'utf8')) as CommitRecord;
  const out: Extract<LogRecord, { type: 'D' }>[] = [];
  await scanStripeLog(paths.stripeLog(0), { stagingId: commit.stagingId, stripe: 0, mode: 'inline' }, (r) => {
    if (r.type === 'D') out.push(r);
  });
  return out;
}

/** Block i of a file (1 MiB blocks). */
async function block(path: string, i: number): Promise<Buffer> {
  return (await readFile(path)).subarray(i * MiB, (i + 1) * MiB);
}

void describe('store: damage on the local disk', { concurrency: false }, () => {
  void test('the listing survives a damaged manifest and an odd-named image, and says why for each', async () => {
    const good = await fixture('good');
    await sync(fx.d, good.backups, good.device, { ...OPTS, volumeName: 'good' });
    const bad = storePaths(good.backups, 'bad');
    const badDevice = join(good.dir, 'bad.device');
    await makeDevice(badDevice, 4 * MiB, MiB, () => 'random');
    await sync(fx.d, good.backups, badDevice, { ...OPTS, volumeName: 'bad' });
    await flipByte(bad.manifest, (await readFile(bad.manifest)).length - 40); // inside the block hashes
    await writeFile(join(good.backups, 'My Disk (old).img'), Buffer.alloc(4096, 7));

    const reports = await inspectImages(good.backups);
    const byName = Object.fromEntries(reports.map((r) => [r.volumeName, r]));
    assert.deepEqual(Object.keys(byName).sort(), ['My Disk (old)', 'bad', 'good']);
    assert.equal(byName.good?.state, 'ok');
    assert.equal(byName.bad?.state, 'corrupt-manifest');
    assert.match(byName.bad?.detail ?? '', /damaged.*re-hashes the image/);
    assert.equal(byName.bad?.sizeBytes, 4 * MiB, 'the image itself is still described');
    assert.equal(byName['My Disk (old)']?.state, 'unsupported-name');
    assert.equal(byName['My Disk (old)']?.sizeBytes, 4096);
    assert.match(byName['My Disk (old)']?.detail ?? '', /invalid volume name/);

    // --verify too, and a manifest that is not even one any more (zero-length after a crash) is damage, not a format.
    await truncate(bad.manifest, 0);
    const verified = await inspectImages(good.backups, { verify: true });
    assert.deepEqual(
      verified.map((r) => [r.volumeName, r.state]),
      [
        ['My Disk (old)', 'unsupported-name'],
        ['bad', 'corrupt-manifest'],
        ['good', 'ok'],
      ],
    );
  });

  void test('a sync after a damaged manifest re-hashes the image and produces a correct one', async () => {
    const f = await fixture();
    await sync(fx.d, f.backups, f.device, OPTS);
    await flipByte(f.paths.manifest, 100);
    await mutateRegion(f.device, MiB, 4, 'random');
    const r = await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-2' });
    assert.equal(r.adopted, true, 'the image was re-hashed instead of trusting the manifest');
    assert.equal(r.blocksChanged, 1, 'and only what differs was fetched');
    assert.ok(await filesEqual(f.device, f.paths.image));
    const v = await verifyImage(f.backups, 'vol1');
    assert.equal(v.ok, true);
    assert.equal(v.manifest.header.snapshotId, 'snap-2');
    assert.equal((await inspectImages(f.backups))[0]?.state, 'ok');
  });

  void test('staged data that fails its SHA-256 at commit is not written; image and manifest agree; the next sync fetches it', async () => {
    const f = await fixture();
    await sync(fx.d, f.backups, f.device, OPTS);
    const before = await readFile(f.paths.image);
    for (const i of [0, 2, 6]) await mutateRegion(f.device, MiB, i, 'random');
    let damaged = -1;
    const err = await sync(fx.d, f.backups, f.device, {
      ...OPTS,
      snapshotId: 'snap-2',
      hooks: {
        onApplyStep: async (step) => {
          if (step !== 'committed') return;
          const recs = await dataRecords(f.paths);
          const rec = recs[1]!; // the middle one of three
          damaged = rec.index;
          await flipByte(f.paths.stripeLog(0), rec.dataOffset + 1234);
        },
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.equal(damaged, 2);
    assert.ok(err instanceof RedoLogDamagedError, String(err));
    assert.deepEqual(err.blocks, [2]);
    assert.match(err.message, /\(block 2;/);
    // The damaged block kept its old content, the others are new; the manifest says exactly that.
    assert.ok((await block(f.paths.image, 2)).equals(before.subarray(2 * MiB, 3 * MiB)), 'block 2 not written');
    for (const i of [0, 6]) assert.ok((await block(f.paths.image, i)).equals(await block(f.device, i)), `block ${i}`);
    const v = await verifyImage(f.backups, 'vol1');
    assert.equal(v.ok, true, `image and manifest agree: bad ${v.badBlocks.join(',')}`);
    assert.deepEqual(v.manifest.header.staleBlocks?.first, [2]);
    const listed = (await inspectImages(f.backups))[0]!;
    assert.equal(listed.state, 'incomplete');
    assert.match(listed.detail ?? '', /1 block.*first: 2\)/);

    const r = await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-2' });
    assert.equal(r.adopted, false);
    assert.equal(r.blocksChanged, 1, 'only the stale block travels again');
    assert.ok(await filesEqual(f.device, f.paths.image));
    assert.equal((await verifyImage(f.backups, 'vol1')).manifest.header.staleBlocks, undefined);
    assert.equal((await inspectImages(f.backups))[0]?.state, 'ok');
  });

  void test('damaged staged data found when a crashed apply is finished is skipped the same way', async () => {
    const f = await fixture();
    await sync(fx.d, f.backups, f.device, OPTS);
    for (const i of [0, 2, 6, 8]) await mutateRegion(f.device, MiB, i, 'random');
    await assert.rejects(
      sync(fx.d, f.backups, f.device, {
        ...OPTS,
        snapshotId: 'snap-2',
        hooks: {
          onApplyRecord: (k) => {
            if (k === 1) throw new Error('simulated crash after the first record');
          },
        },
      }),
      /simulated crash/,
    );
    const recs = await dataRecords(f.paths);
    const victim = recs[2]!;
    await flipByte(f.paths.stripeLog(0), victim.dataOffset);
    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    try {
      assert.equal(store.recovery, 'applied');
    } finally {
      await store.release();
    }
    const v = await verifyImage(f.backups, 'vol1');
    assert.equal(v.ok, true, `image and manifest agree: bad ${v.badBlocks.join(',')}`);
    assert.equal(v.manifest.header.snapshotId, 'snap-2');
    assert.deepEqual(v.manifest.header.staleBlocks?.first, [victim.index]);
    const r = await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-2' });
    assert.equal(r.blocksChanged, 1);
    assert.ok(await filesEqual(f.device, f.paths.image));
  });

  void test('a staged log that cannot be read at commit drops the update before it touches the image', async () => {
    const f = await fixture();
    await sync(fx.d, f.backups, f.device, OPTS);
    const before = await readFile(f.paths.image);
    const manifestBefore = await readFile(f.paths.manifest);
    for (const i of [0, 2]) await mutateRegion(f.device, MiB, i, 'random');
    const err = await sync(fx.d, f.backups, f.device, {
      ...OPTS,
      snapshotId: 'snap-2',
      hooks: {
        onApplyStep: async (step) => {
          if (step !== 'committed') return;
          const recs = await dataRecords(f.paths);
          await flipByte(f.paths.stripeLog(0), recs[1]!.dataOffset - 5); // the CRC-protected part of a record
        },
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof RedoLogDamagedError, String(err));
    assert.match(err.message, /dropped before it touched the image: its redo log cannot be read/);
    assert.ok((await readFile(f.paths.image)).equals(before), 'image untouched');
    assert.ok((await readFile(f.paths.manifest)).equals(manifestBefore), 'manifest untouched');
    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    assert.equal(store.imageChanged, false, 'still trusted: nothing was written');
    await store.release();
    const r = await sync(fx.d, f.backups, f.device, { ...OPTS, snapshotId: 'snap-2' });
    assert.equal(r.adopted, false);
    assert.ok(await filesEqual(f.device, f.paths.image));
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
  });
});
