// Using kept versions (activities/store-ops): the listing, restoring a chosen version to a file, and verifying the
// store (chunks, versions, images, one slice at a time), over stores made by real syncs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chunkPath, chunksNeeded, listChunks, listVersions, storePaths } from '../../activities/store/index.js';
import { restoreToFile } from '../../activities/store-ops/restore-file.js';
import { StoreRequestError, chooseVersion, resolveStores } from '../../activities/store-ops/select.js';
import { blockSlice, verifyStore } from '../../activities/store-ops/verify.js';
import { versionsReport } from '../../activities/store-ops/versions-report.js';
import { contentDigest } from '../support/sparse.js';
import { allocatedBytes, filesEqual, nonZeroBytes, startDroplet, tempDir, type Droplet } from '../transfer/helpers.js';
import { BLOCK, TestVolume, rng } from '../store/support.js';

let d: Droplet;
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;
const dir = () => join(tmp.dir, `t${++n}`);

before(async () => {
  d = await startDroplet();
  tmp = await tempDir('dosvob-store-ops-');
});
after(async () => {
  await d?.close();
  await tmp?.cleanup();
});

/** A volume synced `syncs` times with random changes between the syncs. */
async function synced(syncs: number, seed: number, size = 40 * BLOCK + 1234): Promise<TestVolume> {
  const v = await TestVolume.create(d, dir(), size, { region: 'nyc3' });
  const next = rng(seed);
  for (let k = 1; k <= syncs; k++) {
    if (k > 1) await v.mutate(next);
    await v.sync({ runId: `run-${k}` });
  }
  return v;
}

const rejectsAsRequest = (p: Promise<unknown>, re: RegExp) =>
  assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreRequestError, String(err));
    assert.match(err.message, re);
    return true;
  });

void describe('using kept versions', { concurrency: false }, () => {
  void test('versions: every sync listed oldest first with snapshot, run, blocks changed and what it alone holds', async () => {
    const v = await synced(4, 4);
    const report = await versionsReport(v.backups);
    assert.equal(report.stores.length, 1);
    const [s] = report.stores;
    assert.equal(s!.key, 'vol1');
    assert.equal(s!.region, 'nyc3');
    assert.deepEqual(
      s!.versions.map((x) => [x.snapshotId, x.runId, x.newest]),
      [
        ['snap-1', 'run-1', false],
        ['snap-2', 'run-2', false],
        ['snap-3', 'run-3', false],
        ['snap-4', 'run-4', true],
      ],
    );
    assert.deepEqual(
      [...v.states.keys()],
      s!.versions.map((x) => x.versionId),
    );
    assert.ok(s!.versions.slice(1).every((x) => x.blocksChanged! > 0 && x.blocksChanged! <= x.blockCount));
    assert.equal(s!.versions[3]!.uniqueBytes, 0, "the newest version's blocks are the image's");
    assert.ok(
      s!.versions.slice(0, 3).every((x) => x.uniqueBytes > 0 && x.chunkRefs > 0),
      'older ones hold chunks',
    );
    const sumUnique = s!.versions.reduce((sum, x) => sum + x.uniqueBytes, 0);
    assert.ok(sumUnique <= report.usage.chunkBytes);
    assert.equal(
      report.usage.totalBytes,
      report.usage.imageBytes + report.usage.chunkBytes + report.usage.manifestBytes,
    );
    assert.equal(report.usage.imageApparentBytes, await v.size());
    assert.equal(report.usage.chunkCount, (await listChunks(v.backups)).length);
  });

  void test('a volume is named by its name (every region), its key, or name@region; an unknown one is refused', async () => {
    const a = await TestVolume.create(d, dir(), 8 * BLOCK, { region: 'nyc3' });
    await a.sync();
    // The same name in another region: its own store, in the same backups directory.
    const b = new TestVolume(d, a.dir, a.device, a.backups, { ...a.base, region: 'fra1' });
    await b.sync();
    const keys = async (volume?: string) => (await resolveStores(a.backups, volume)).map((s) => s.key);
    assert.deepEqual(await keys(), ['vol1', 'vol1@fra1']);
    assert.deepEqual(await keys('vol1'), ['vol1'], 'a key names exactly its store');
    assert.deepEqual(await keys('vol1@fra1'), ['vol1@fra1']);
    assert.deepEqual(await keys('vol1@nyc3'), ['vol1'], 'name@region finds the key that region owns');
    await rejectsAsRequest(resolveStores(a.backups, 'vol2'), /no backups of "vol2".*it has: vol1, vol1@fra1/);
    const listed = await versionsReport(a.backups, 'vol1@fra1');
    assert.deepEqual(
      listed.stores.map((s) => [s.key, s.region, s.versions.length]),
      [['vol1@fra1', 'fra1', 1]],
    );
  });

  void test('restore: each version to a file, byte-exact and sparse; --at picks the newest at or before a time', async () => {
    const v = await synced(4, 7);
    const versions = await listVersions(v.backups, 'vol1');
    for (const [i, x] of versions.entries()) {
      const to = join(v.dir, `restored-${i}.img`);
      const r = await restoreToFile(v.backups, { volume: 'vol1', versionId: x.versionId, toFile: to });
      assert.equal(r.versionId, x.versionId);
      assert.equal(await contentDigest(to), v.states.get(x.versionId), `version ${i + 1} byte-exact`);
      // Sparse: what is allocated is the data, not the holes (4 KiB pages with data, plus a little).
      const alloc = await allocatedBytes(to);
      const data = await nonZeroBytes(to);
      assert.ok(alloc <= data + 64 * 1024, `version ${i + 1}: ${alloc} bytes allocated for ${data} of data`);
      assert.ok(alloc < (await v.size()) * 0.8, 'not a full copy');
    }
    const at = async (time: string | undefined) => (await chooseVersion(v.backups, 'vol1', { at: time })).versionId;
    assert.equal(await at(versions[1]!.time), versions[1]!.versionId, 'exactly at a version: that one');
    const between = new Date((Date.parse(versions[2]!.time) + Date.parse(versions[3]!.time)) / 2).toISOString();
    assert.equal(await at(between), versions[2]!.versionId, 'between two: the older');
    assert.equal(await at('2999-01-01T00:00:00Z'), versions[3]!.versionId);
    assert.equal(await at(undefined), versions[3]!.versionId, 'no time: the newest');
    const before = new Date(Date.parse(versions[0]!.time) - 1).toISOString();
    await rejectsAsRequest(at(before), /no version at or before .*its oldest is from/);
    await rejectsAsRequest(chooseVersion(v.backups, 'vol1', { versionId: '20200101T000000Z-abcdef' }), /no version/);
  });

  void test('restore refuses an existing file (unless forced), a path in the backups directory, and bad paths', async () => {
    const v = await synced(2, 9, 8 * BLOCK);
    const existing = join(v.dir, 'there.img');
    await writeFile(existing, 'keep me');
    await rejectsAsRequest(
      restoreToFile(v.backups, { volume: 'vol1', toFile: existing }),
      /there\.img exists: remove it, or pass --force/,
    );
    assert.equal(await readFile(existing, 'utf8'), 'keep me', 'nothing written');
    await rejectsAsRequest(
      restoreToFile(v.backups, { volume: 'vol1', toFile: join(v.backups, 'copy.img') }),
      /inside the backups directory/,
    );
    await rejectsAsRequest(
      restoreToFile(v.backups, { volume: 'vol1', toFile: storePaths(v.backups, 'vol1').image, force: true }),
      /inside the backups directory/,
    );
    await rejectsAsRequest(restoreToFile(v.backups, { volume: 'vol1', toFile: 'relative.img' }), /absolute path/);
    await rejectsAsRequest(
      restoreToFile(v.backups, { volume: 'vol1', toFile: join(v.dir, 'no-such-dir', 'x.img') }),
      /is not a directory/,
    );
    await rejectsAsRequest(restoreToFile(v.backups, { volume: 'nope', toFile: join(v.dir, 'x.img') }), /no backups/);
    const r = await restoreToFile(v.backups, { volume: 'vol1', toFile: existing, force: true });
    assert.ok(r.sizeBytes > 0);
    assert.ok(await filesEqual(existing, v.device), '--force replaces it with the newest version');
  });

  void test('verify: a damaged chunk is found, moved aside as .bad, and the versions it breaks are named', async () => {
    const v = await synced(5, 11);
    const clean = await verifyStore(v.backups);
    assert.equal(clean.exitCode, 0);
    assert.deepEqual(clean.chunks.bad, []);
    assert.equal(clean.images[0]!.state, 'ok');
    assert.equal(clean.images[0]!.verify!.blocksChecked, Math.ceil((await v.size()) / BLOCK));

    const versions = await listVersions(v.backups, 'vol1');
    const needed = await chunksNeeded(v.backups, 'vol1');
    const victim = [...needed.get(versions[0]!.versionId)!.keys()][0]!;
    const breaks = versions.filter((x) => needed.get(x.versionId)?.has(victim)).map((x) => x.versionId);
    const p = chunkPath(v.backups, victim);
    const buf = await readFile(p);
    buf[7] = buf[7]! ^ 0x01;
    await writeFile(p, buf);

    const found = await verifyStore(v.backups);
    assert.equal(found.exitCode, 1);
    assert.deepEqual(
      found.chunks.bad.map((b) => [b.hash, b.movedTo]),
      [[victim, `${p}.bad`]],
    );
    assert.ok((await readFile(`${p}.bad`)).equals(buf), 'kept aside for a person');
    await assert.rejects(stat(p), /ENOENT/);
    assert.deepEqual(
      found.chunks.brokenVersions.map((b) => [b.key, b.versionId, b.missingChunks]),
      breaks.map((id) => ['vol1', id, [victim]]),
    );
    assert.equal(found.images[0]!.state, 'ok', 'the image itself is sound');
    // Found once; afterwards the versions stay named as broken (the chunk is gone), with no chunk bad any more.
    const again = await verifyStore(v.backups);
    assert.deepEqual(again.chunks.bad, []);
    assert.deepEqual(
      again.chunks.brokenVersions.map((b) => b.versionId),
      breaks,
    );
  });

  void test('verify --subset: T slices check every chunk and every image block exactly once', async () => {
    const v = await synced(4, 13);
    const all = (await listChunks(v.backups)).map((c) => c.hash).sort();
    const blockCount = Math.ceil((await v.size()) / BLOCK);
    for (const T of [1, 3, 7]) {
      let checked = 0;
      const blocks: number[] = [];
      for (let N = 1; N <= T; N++) {
        const r = await verifyStore(v.backups, { subset: { n: N, of: T } });
        assert.equal(r.exitCode, 0);
        checked += r.chunks.checked;
        const range = r.images[0]!.verifiedBlocks!;
        assert.deepEqual(range, blockSlice(blockCount, { n: N, of: T }));
        assert.equal(r.images[0]!.verify!.blocksChecked, range.to - range.from);
        for (let i = range.from; i < range.to; i++) blocks.push(i);
      }
      assert.equal(checked, all.length, `T=${T}: as many chunks checked as there are`);
      assert.deepEqual(blocks, [...Array(blockCount).keys()], `T=${T}: every block once, in order`);
    }
    // Each chunk is in exactly one slice: damage one and only its slice finds it.
    const victim = all[0]!;
    const p = chunkPath(v.backups, victim);
    const buf = await readFile(p);
    buf[0] = buf[0]! ^ 0x80;
    await writeFile(p, buf);
    const finders: number[] = [];
    for (let N = 1; N <= 3; N++) {
      const r = await verifyStore(v.backups, { subset: { n: N, of: 3 } });
      if (r.chunks.bad.some((b) => b.hash === victim)) finders.push(N);
    }
    assert.equal(finders.length, 1, `found by exactly one slice: ${finders.join(', ')}`);
    await assert.rejects(verifyStore(v.backups, { subset: { n: 4, of: 3 } }), StoreRequestError);
  });

  void test('verify: a rotten image block is reported, and the next sync fetches it again', async () => {
    const v = await synced(2, 17, 16 * BLOCK);
    const image = storePaths(v.backups, 'vol1').image;
    // Bit rot in block 5: size and times unchanged, so nothing but reading it can tell.
    const { mtimeNs } = await stat(image, { bigint: true });
    const fh = await open(image, 'r+');
    const byte = Buffer.alloc(1);
    await fh.read(byte, 0, 1, 5 * BLOCK + 10);
    byte[0] = byte[0]! ^ 0x20;
    await fh.write(byte, 0, 1, 5 * BLOCK + 10);
    await fh.close();
    // To the nanosecond (utimes() takes a double of seconds, and the stamp compares exactly).
    const ns = (mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
    execFileSync('touch', ['-m', '-d', `@${mtimeNs / 1_000_000_000n}.${ns}`, image]);
    assert.equal(await filesEqual(image, v.device), false);

    const other = await verifyStore(v.backups, { subset: { n: 2, of: 2 } });
    assert.equal(other.images[0]!.state, 'ok', 'block 5 is not in the second half');
    const r = await verifyStore(v.backups, { subset: { n: 1, of: 2 } });
    assert.equal(r.exitCode, 1);
    const [img] = r.images;
    assert.equal(img!.state, 'corrupt');
    assert.deepEqual(img!.verify?.firstBadBlocks, [5]);
    assert.equal(img!.markedForRefetch, true);
    assert.match(img!.detail!, /next sync .* fetches them again/);

    // The volume did not change: its hashes equal the manifest's, yet the sync repairs the image.
    const synced3 = await v.sync();
    assert.equal(synced3.adopted, true, 'the image was re-hashed');
    assert.equal(synced3.blocksChanged + synced3.blocksZeroed, 1, 'the damaged block, and only it, was fetched');
    assert.ok(await filesEqual(image, v.device), 'the image is the volume again');
    const after = await verifyStore(v.backups);
    assert.equal(after.images[0]!.state, 'ok');
    assert.equal(after.exitCode, 0, JSON.stringify(after.chunks.brokenVersions));
  });
});
