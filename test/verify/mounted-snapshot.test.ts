// A snapshot of a mounted, busy filesystem (what a backup without a freeze hook gets) must not be called broken just
// because its journal or log was not replayed: ext4's journal is replayed on a temporary copy before e2fsck -fn, and an
// XFS log that only a mount can replay makes the check `unchecked`, not failed. Real kernels make these images, so the
// tests need root and loop devices; they skip with the reason elsewhere.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { fsckImage } from '../../activities/verify/fsck';
import { HEAD_BYTES, extNeedsRecovery } from '../../activities/verify/signature';
import { tempDir } from '../transfer/helpers';
import { MiB, fileState, makeExt4, makeXfs, missingTools } from './support';

const run = promisify(execFile);
const needs =
  process.getuid?.() !== 0
    ? 'needs root (a loop mount)'
    : !existsSync('/dev/loop-control')
      ? 'no loop devices here'
      : missingTools('mkfs.ext4', 'debugfs', 'e2fsck', 'mkfs.xfs', 'xfs_repair', 'mount', 'umount');

describe('snapshots of mounted filesystems', { skip: needs }, () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let tempArea: string;
  /** Why a loop mount failed here (a container without the privilege), if it did. */
  let cannotMount: string | undefined;

  before(async () => {
    work = await tempDir('dosvob-mounted-');
    tempArea = join(work.dir, 'verify-tmp');
    await mkdir(tempArea);
    const probe = join(work.dir, 'probe.img');
    await makeExt4(probe, 32 * MiB);
    try {
      await withMount(probe, async () => undefined);
    } catch (err) {
      cannotMount = `cannot loop-mount here: ${(err as Error).message.split('\n')[0]}`;
    }
  });
  after(async () => {
    await work?.cleanup();
  });

  async function withMount(image: string, fn: (dir: string) => Promise<void>): Promise<void> {
    const dir = `${image}.mnt`;
    await mkdir(dir, { recursive: true });
    await run('mount', ['-o', 'loop', image, dir], { timeout: 30_000 });
    try {
      await fn(dir);
    } finally {
      await run('umount', [dir], { timeout: 30_000 });
    }
  }

  /** Files written, synced, then changed again, and the image copied while still mounted: a crash-consistent snapshot. */
  async function snapshotWhileBusy(image: string): Promise<string> {
    const snap = `${image}.snap`;
    await withMount(image, async (dir) => {
      for (let i = 0; i < 100; i++) await writeFile(join(dir, `f${i}`), `file ${i}\n`.repeat(100));
      await run('sync', ['-f', dir]);
      for (let i = 0; i < 50; i++) await mkdir(join(dir, `d${i}`));
      await run('cp', ['--sparse=always', image, snap]);
    });
    return snap;
  }

  const skipIfUnmountable = (t: TestContext): boolean => {
    if (cannotMount) t.skip(cannotMount);
    return cannotMount !== undefined;
  };

  it("replays an ext4 snapshot's journal on a copy before checking it", async (t) => {
    if (skipIfUnmountable(t)) return;
    const image = join(work.dir, 'ext4.img');
    await makeExt4(image, 128 * MiB);
    const snap = await snapshotWhileBusy(image);
    const head = Buffer.alloc(HEAD_BYTES);
    const fh = await open(snap, 'r');
    await fh.read(head, 0, HEAD_BYTES, 0);
    await fh.close();
    assert.equal(extNeedsRecovery(head), true, 'the snapshot has a journal to replay');
    const before = await fileState(snap);
    const r = await fsckImage(snap, { tempDir: tempArea });
    assert.equal(r.result, 'passed', r.summary);
    assert.match(r.summary, /e2fsck: exit 0 \(no errors\) after replaying its journal on a copy/);
    assert.equal(await fileState(snap), before, 'the snapshot itself was not replayed');
    assert.deepEqual(await readdir(tempArea), []);

    // The same snapshot as dosvob's own scratch copy (a restored old version): replayed in place, same verdict.
    const scratch = join(work.dir, 'scratch.img');
    await copyFile(snap, scratch);
    const s = await fsckImage(scratch, { tempDir: tempArea, scratch: true });
    assert.equal(s.result, 'passed', s.summary);
  });

  it('calls an XFS snapshot whose log needs a mount unchecked, never failed', async (t) => {
    if (skipIfUnmountable(t)) return;
    const image = join(work.dir, 'xfs.img');
    await makeXfs(image, 512 * MiB);
    const snap = await snapshotWhileBusy(image);
    const before = await fileState(snap);
    const r = await fsckImage(snap, { tempDir: tempArea });
    assert.equal(await fileState(snap), before);
    assert.notEqual(r.result, 'failed', r.summary);
    if (r.result === 'unchecked') assert.match(r.summary, /its log holds changes only a mount replays/);
  });
});
