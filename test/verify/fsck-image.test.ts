// The filesystem checkers on real images (activities/verify/fsck.ts): a clean ext4 passes, a torn one (the simulator's
// fault) fails with e2fsck's verdict, XFS is checked where xfs_repair is installed, an unknown filesystem and a missing
// checker are `unchecked`, a partitioned image is checked partition by partition; and no image is ever written.
import assert from 'node:assert/strict';
import { mkdir, open, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fsckImage } from '../../activities/verify/fsck';
import { tempDir } from '../transfer/helpers';
import {
  MiB,
  fileState,
  makeExt4,
  makeXfs,
  missingTools,
  placeAt,
  setExt4Feature,
  tearExt4,
  writeGpt,
  writeMbr,
} from './support';

const noExt4 = missingTools('mkfs.ext4', 'debugfs', 'e2fsck');
const noXfs = missingTools('mkfs.xfs', 'xfs_repair');

describe('fsck of raw images', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let tempArea: string;
  const options = () => ({ tempDir: tempArea });

  before(async () => {
    work = await tempDir('dosvob-fsck-');
    tempArea = join(work.dir, 'verify-tmp');
    await mkdir(tempArea);
  });
  after(async () => {
    await work?.cleanup();
  });

  /** fsckImage, asserting it left the image exactly as it was (content, size and mtime). */
  async function check(file: string, extra: Partial<Parameters<typeof fsckImage>[1]> = {}) {
    const before = await fileState(file);
    const report = await fsckImage(file, { ...options(), ...extra });
    assert.equal(await fileState(file), before, `${file} was not written`);
    assert.deepEqual(await readdir(tempArea), [], 'no temporary file left');
    return report;
  }

  it('passes a clean ext4 image', { skip: noExt4 }, async () => {
    const img = join(work.dir, 'clean.img');
    await makeExt4(img, 64 * MiB, { 'hello.txt': 'hello\n', 'data.bin': 'x'.repeat(100_000) });
    const r = await check(img);
    assert.equal(r.result, 'passed', r.summary);
    assert.equal(r.layout, 'filesystem');
    assert.equal(r.parts.length, 1);
    assert.equal(r.parts[0]!.filesystem, 'ext4');
    assert.equal(r.parts[0]!.checker, 'e2fsck -fn');
    assert.equal(r.parts[0]!.exitCode, 0);
    assert.match(r.summary, /^passed: ext4: e2fsck: exit 0 \(no errors\)$/);
  });

  it("fails a torn ext4 image with e2fsck's verdict", { skip: noExt4 }, async () => {
    const img = join(work.dir, 'torn.img');
    await makeExt4(img, 64 * MiB, { 'hello.txt': 'hello\n' });
    assert.equal(await tearExt4(img, join(work.dir, 'sim-torn')), true);
    const r = await check(img, { label: 'web-data 20261202T000000Z-abcdef' });
    assert.equal(r.result, 'failed', r.summary);
    assert.equal(r.parts[0]!.exitCode, 4);
    assert.match(r.summary, /^failed: ext4: e2fsck: exit 4 \(errors left uncorrected\)$/);
    assert.match(r.parts[0]!.verdict, /Filesystem still has errors/);
    assert.match(r.parts[0]!.verdict, /Free blocks count wrong for group #0/);
    assert.doesNotMatch(r.parts[0]!.verdict, new RegExp(img), "the verdict names the version, not the file's path");
    assert.match(r.parts[0]!.verdict, /web-data 20261202T000000Z-abcdef/);
  });

  it(
    'replays the journal of an ext4 image that needs recovery on a copy, never on the image',
    { skip: noExt4 },
    async () => {
      const img = join(work.dir, 'recover.img');
      await makeExt4(img, 64 * MiB, { 'x.txt': 'x\n' });
      // What a snapshot of a mounted ext4 says of itself (a real one is made in mounted-snapshot.test.ts, as root).
      await setExt4Feature(img, 'needs_recovery');
      const r = await check(img);
      assert.equal(r.result, 'passed', r.summary);
      assert.match(r.summary, /^passed: ext4: e2fsck: exit 0 \(no errors\) after replaying its journal on a copy$/);
    },
  );

  it('checks an XFS image with xfs_repair -n', { skip: noXfs }, async () => {
    const img = join(work.dir, 'xfs.img');
    await makeXfs(img, 512 * MiB);
    const r = await check(img);
    assert.equal(r.result, 'passed', r.summary);
    assert.equal(r.parts[0]!.filesystem, 'xfs');
    assert.equal(r.parts[0]!.checker, 'xfs_repair -n -f');

    // The first allocation group's free-space header (sector 1) overwritten: xfs_repair finds it.
    const fh = await open(img, 'r+');
    await fh.write(Buffer.alloc(512, 0x5a), 0, 512, 512);
    await fh.close();
    const bad = await check(img);
    assert.equal(bad.result, 'failed', bad.summary);
    assert.equal(bad.parts[0]!.exitCode, 1);
    assert.match(bad.summary, /^failed: xfs: xfs_repair: exit 1 \(corruption found\)$/);
  });

  it('reports an unknown filesystem, and an empty device, as unchecked', async () => {
    const noise = join(work.dir, 'noise.img');
    await writeFile(noise, Buffer.alloc(256 * 1024, 0x5a));
    const r = await check(noise);
    assert.equal(r.result, 'unchecked');
    assert.equal(r.layout, 'unknown');
    assert.match(r.summary, /no filesystem dosvob recognises/);

    const empty = join(work.dir, 'empty.img');
    await writeFile(empty, '');
    await truncate(empty, 64 * MiB);
    const e = await check(empty);
    assert.equal(e.result, 'unchecked');
    assert.match(e.summary, /all zeros/);
  });

  it('reports a missing checker as unchecked, with the reason', { skip: noExt4 }, async () => {
    const img = join(work.dir, 'nochecker.img');
    await makeExt4(img, 32 * MiB);
    const nowhere = join(work.dir, 'empty-bin');
    await mkdir(nowhere, { recursive: true });
    const r = await check(img, { searchPath: [nowhere] });
    assert.equal(r.result, 'unchecked');
    assert.match(r.summary, /e2fsck is not installed on the store's machine/);
  });

  it('checks each partition of an MBR disk at its offset', { skip: noExt4 }, async () => {
    const disk = join(work.dir, 'mbr.img');
    await writeFile(disk, '');
    await truncate(disk, 100 * MiB);
    const good = join(work.dir, 'p1.img');
    const torn = join(work.dir, 'p2.img');
    await makeExt4(good, 40 * MiB, { 'a.txt': 'first partition\n' });
    await makeExt4(torn, 40 * MiB, { 'b.txt': 'second partition\n' });
    await tearExt4(torn, join(work.dir, 'sim-p2'));
    await placeAt(good, disk, MiB);
    await placeAt(torn, disk, 41 * MiB);
    // Partition 3: swap, which is listed and not checked.
    const swap = Buffer.alloc(4096);
    swap.write('SWAPSPACE2', 4086, 'latin1');
    const fh = await open(disk, 'r+');
    await fh.write(swap, 0, swap.length, 81 * MiB);
    await fh.close();
    const sectors = (40 * MiB) / 512;
    await writeMbr(disk, [
      { startLba: 2048, sectors },
      { startLba: 2048 + sectors, sectors },
      { startLba: 2048 + 2 * sectors, sectors: (10 * MiB) / 512, type: 0x82 },
    ]);
    const r = await check(disk);
    assert.equal(r.layout, 'mbr');
    assert.deepEqual(
      r.parts.map((p) => [p.partition, p.offset, p.filesystem, p.result]),
      [
        [1, MiB, 'ext4', 'passed'],
        [2, 41 * MiB, 'ext4', 'failed'],
        [3, 81 * MiB, 'swap space', 'unchecked'],
      ],
    );
    assert.equal(r.result, 'failed');
    assert.match(r.summary, /^failed: partition 2 ext4: e2fsck: exit 4/);
  });

  it('checks the partitions of a GPT disk', { skip: noExt4 }, async () => {
    const disk = join(work.dir, 'gpt.img');
    await writeFile(disk, '');
    await truncate(disk, 80 * MiB);
    const p1 = join(work.dir, 'g1.img');
    await makeExt4(p1, 32 * MiB, { 'c.txt': 'gpt\n' });
    await placeAt(p1, disk, MiB);
    await writeGpt(disk, [
      { startLba: 2048, sectors: (32 * MiB) / 512, name: 'root' },
      { startLba: 2048 + (32 * MiB) / 512, sectors: (16 * MiB) / 512, name: 'blank' },
    ]);
    const r = await check(disk);
    assert.equal(r.layout, 'gpt');
    assert.deepEqual(
      r.parts.map((p) => [p.partition, p.filesystem, p.result]),
      [
        [1, 'ext4', 'passed'],
        [2, 'no filesystem', 'unchecked'],
      ],
    );
    assert.equal(r.result, 'passed');
    assert.match(r.summary, /^passed: partition 1 ext4: .*; not checked: partition 2 no filesystem$/);
  });
});
