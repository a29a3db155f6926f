// Kept versions survive a SIGKILL at any point of a commit (while the overwritten blocks are being kept, while the
// update is applied, between the steps that finish it) and a full disk while the blocks are being kept: every version
// stays restorable byte-exact and verified, and the next sync works.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DiskFullError,
  VolumeStore,
  chunksDir,
  listChunks,
  listVersions,
  lockChunkStoreExclusive,
  markNeededChunks,
  storePaths,
  verifyImage,
  type ApplyStep,
} from '../../activities/store/index.js';
import { baseOptions, dropletFixture } from '../transfer/helpers.js';
import { BLOCK, TestVolume, assertChunksSound, rng } from './support.js';

const CHILD = join(__dirname, 'fixtures', 'versions-kill-child.ts');

const fx = dropletFixture('dosvob-versions-crash-');

type Kill = { killAtChunk?: number; killAtRecord?: number; killAtStep?: ApplyStep; copyEarly?: boolean };

/** Run the sync in a child that kills itself at `kill`; resolves once it is dead (asserting it was killed). */
async function killedSync(v: TestVolume, kill: Kill): Promise<void> {
  const opts = { ...baseOptions(fx.d, v.backups, v.device, v.options()), ...kill };
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(opts)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('close', (_c, sig) => resolve(sig)));
  assert.equal(signal, 'SIGKILL', `the child was to be killed at ${JSON.stringify(kill)}: ${out}`);
}

/** Three versions, then changes that overwrite blocks whose content is kept nowhere yet. */
async function threeVersions(seed: number): Promise<TestVolume> {
  const v = await TestVolume.create(fx.d, fx.dir(), 40 * BLOCK);
  const next = rng(seed);
  for (let k = 0; k < 3; k++) {
    if (k > 0) await v.mutate(next);
    await v.sync();
  }
  for (const i of [1, 4, 7, 10, 13, 16]) await v.write(i * BLOCK, randomBytes(BLOCK));
  return v;
}

const CASES: { name: string; kill: Kill; committed: boolean }[] = [
  {
    name: 'while copying overwritten blocks during the stream (2nd chunk)',
    kill: { killAtChunk: 2 },
    committed: false,
  },
  {
    name: 'while the commit keeps the overwritten blocks (2nd chunk)',
    kill: { killAtChunk: 2, copyEarly: false },
    committed: false,
  },
  { name: 'after the blocks are kept, before COMMIT', kill: { killAtStep: 'chunks-saved' }, committed: false },
  { name: 'right after COMMIT', kill: { killAtStep: 'committed' }, committed: true },
  { name: 'mid-apply (3rd record written into the image)', kill: { killAtRecord: 3 }, committed: true },
  { name: 'after the image is written', kill: { killAtStep: 'image-written' }, committed: true },
  { name: 'after the version file, before the manifest', kill: { killAtStep: 'version-written' }, committed: true },
  { name: 'after the manifest advanced', kill: { killAtStep: 'manifest-advanced' }, committed: true },
];

void describe('kept versions: crashes', { concurrency: false }, () => {
  for (const [k, c] of CASES.entries()) {
    void test(`SIGKILL ${c.name}: every version restorable and verified, the next sync works`, async () => {
      const v = await threeVersions(100 + k);
      await killedSync(v, c.kill);
      // Before anything recovers (no lock taken: a restore may run beside a half-applied update).
      assert.equal(await v.assertAllRestore(), 3);

      const store = await VolumeStore.open({ backupsDir: v.backups, volumeName: 'vol1' });
      const recovered = store.recovery;
      await store.release();
      const versions = await listVersions(v.backups, 'vol1');
      assert.equal(versions.length, c.committed ? 4 : 3, `versions after recovery (${recovered})`);
      if (c.committed) {
        assert.equal(recovered === 'applied' || recovered === 'none', true, recovered);
        await v.remember(versions[3]!.versionId);
      }
      assert.equal((await verifyImage(v.backups, 'vol1')).ok, true, 'the image matches its manifest');
      assert.equal(await v.assertAllRestore(), c.committed ? 4 : 3);
      await assertChunksSound(v.backups);

      await v.write(20 * BLOCK, randomBytes(BLOCK));
      await v.sync({ snapshotId: 'snap-after' });
      assert.equal(await v.assertAllRestore(), c.committed ? 5 : 4);
      await assertChunksSound(v.backups);
    });
  }
});

void describe('kept versions: garbage collection beside a commit', { concurrency: false }, () => {
  void test('a mark taken while an update is committed but not applied keeps what the previous version needs', async () => {
    const v = await threeVersions(42);
    await killedSync(v, { killAtStep: 'committed' });
    // The harshest sweep: every chunk the mark does not name, whatever its age.
    const lock = await lockChunkStoreExclusive(v.backups);
    let swept = 0;
    try {
      const marked = await markNeededChunks(v.backups);
      for (const c of await listChunks(v.backups)) {
        if (!marked.has(c.hash)) {
          await rm(c.path);
          swept++;
        }
      }
    } finally {
      await lock.release();
    }
    const store = await VolumeStore.open({ backupsDir: v.backups, volumeName: 'vol1' });
    assert.equal(store.recovery, 'applied');
    await store.release();
    const versions = await listVersions(v.backups, 'vol1');
    assert.equal(versions.length, 4);
    await v.remember(versions[3]!.versionId);
    assert.equal(await v.assertAllRestore(), 4);
    await assertChunksSound(v.backups);
    assert.equal(swept, 0, 'every chunk there was needed by some version');
  });
});

void describe('kept versions: a full disk while keeping the overwritten blocks', { concurrency: false }, () => {
  let mnt: string;
  let mounted = false;
  before(async () => {
    mnt = join(fx.root, 'small-fs');
    await mkdir(mnt, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${24 << 20}`, 'tmpfs', mnt], { stdio: 'ignore' });
      mounted = true;
    } catch {
      // not root, or no mount namespace of our own: skipped below
    }
  });
  after(() => {
    if (mounted) execFileSync('umount', [mnt]);
  });

  const free = async (dir: string) => {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  };

  void test('fails the sync with DiskFullError; image, manifest and every version intact; the next sync works', async (t) => {
    if (!mounted) return t.skip('cannot mount a small tmpfs here (needs root)');
    const v = await TestVolume.create(fx.d, join(fx.root, 'df'), 40 * BLOCK);
    // The device lives outside the small filesystem; only the backups are on it.
    const backups = join(mnt, 'backups');
    Object.assign(v, { backups });
    const next = rng(5);
    await v.sync();
    await v.mutate(next);
    await v.sync();
    const paths = storePaths(backups, 'vol1');
    const digestBefore = (await verifyImage(backups, 'vol1')).manifest.header.digest;
    for (const i of [1, 4, 7, 10, 13, 16, 19, 22]) await v.write(i * BLOCK, randomBytes(BLOCK));

    // The disk fills up (another program) just as the sync starts keeping the blocks it will overwrite: the free-space
    // check has passed, the chunk writes themselves hit ENOSPC.
    const filler = join(mnt, 'filler');
    await assert.rejects(
      v.sync({
        hooks: {
          copyEarly: false, // else the blocks were copied while streaming, before the disk filled
          onApplyStep: async (step) => {
            if (step !== 'saving-chunks') return;
            const room = await free(mnt);
            await writeFile(filler, Buffer.alloc(Math.max(0, room - 2 * BLOCK)));
          },
        },
      }),
      (err: unknown) => {
        assert.ok(err instanceof DiskFullError, String(err));
        assert.match(err.message, /local disk full while writing the chunk store/);
        return true;
      },
    );
    assert.equal(v.syncs, 2, 'no version was made');
    const verified = await verifyImage(backups, 'vol1');
    assert.equal(verified.ok, true);
    assert.equal(verified.manifest.header.digest, digestBefore, 'the image is the previous version');
    await assert.rejects(stat(paths.staging), 'the failed transfer freed its staging area');
    await assert.rejects(stat(paths.commit));
    const leftovers = (await readdir(chunksDir(backups), { recursive: true })).filter((f) =>
      String(f).includes('.tmp-'),
    );
    assert.deepEqual(leftovers, [], 'no temp chunk left');
    assert.equal((await listVersions(backups, 'vol1')).length, 2);
    assert.equal(await v.assertAllRestore(), 2);
    await assertChunksSound(backups);

    // The free-space check refuses up front when the blocks to keep cannot fit.
    await writeFile(filler, Buffer.alloc(Math.max(0, (await free(mnt)) + (await stat(filler)).size - 4 * BLOCK)));
    await assert.rejects(v.sync(), (err: unknown) => err instanceof DiskFullError);
    assert.equal(await v.assertAllRestore(), 2);

    await rm(filler);
    await v.sync();
    assert.equal(await v.assertAllRestore(), 3);
    await assertChunksSound(backups);

    // The disk fills while the blocks are copied in the background (during the stream): whichever write meets the
    // full disk first (a copy, the redo log, or the commit's check), the sync fails cleanly and leaves no temp file.
    for (const i of [2, 5, 8, 11, 14, 17, 20]) await v.write(i * BLOCK, randomBytes(BLOCK));
    await assert.rejects(
      v.sync({
        hooks: {
          onChunkWritten: async (n) => {
            if (n === 1) await writeFile(filler, Buffer.alloc(await free(mnt)));
          },
        },
      }),
      (err: unknown) => err instanceof DiskFullError,
    );
    const left = (await readdir(chunksDir(backups), { recursive: true })).filter((f) => String(f).includes('.tmp-'));
    assert.deepEqual(left, [], 'no temp chunk left');
    await assert.rejects(stat(paths.staging));
    assert.equal(await v.assertAllRestore(), 3);
    await assertChunksSound(backups);
    await rm(filler);
    await v.sync();
    assert.equal(await v.assertAllRestore(), 4);
  });
});
