// Kept versions, end to end through real syncs: each committed sync is a version that restores byte-exact, older
// versions cost only the blocks that were overwritten, and the store's own bookkeeping (usage, protection, removal,
// chunk verification) tells the truth.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  VersionDamagedError,
  chunkPath,
  chunksNeeded,
  listChunks,
  listVersions,
  readVersionBlocks,
  removeVersionManifests,
  restoreVersion,
  setProtected,
  storeUsage,
  verifyChunks,
  verifyImage,
  zeroHash,
} from '../../activities/store/index.js';
import { contentDigest } from '../support/sparse.js';
import { filesEqual, dropletFixture } from '../transfer/helpers.js';
import { BLOCK, TestVolume, assertChunksSound, rng } from './support.js';

const fx = dropletFixture('dosvob-versions-');

void describe('kept versions', { concurrency: false }, () => {
  void test('12 syncs with random changes: each is a version that restores byte-exact to the source at that time', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 48 * BLOCK + 12345);
    const next = rng(12);
    const recurring = randomBytes(BLOCK);
    let changedBytes = 0;
    for (let k = 1; k <= 12; k++) {
      if (k > 1) await v.mutate(next, k % 2 === 0 ? recurring : undefined);
      if (k === 5) await v.resize((await v.size()) + BLOCK + 777); // grows, last block partial
      if (k === 9) await v.resize((await v.size()) - 3 * BLOCK - 5000); // shrinks
      const r = await v.sync({ region: 'nyc3', runId: `run-${k}` });
      assert.ok(await filesEqual(v.device, r.imagePath), `sync ${k}: the image is the plain newest version`);
      changedBytes += r.changedBytes + r.blocksZeroed * BLOCK;
    }
    const versions = await listVersions(v.backups, 'vol1');
    assert.equal(versions.length, 12);
    assert.deepEqual(
      versions.map((x) => x.snapshotId),
      Array.from({ length: 12 }, (_, i) => `snap-${i + 1}`),
      'listed oldest first',
    );
    assert.deepEqual(
      versions.map((x) => x.newest),
      [...Array<boolean>(11).fill(false), true],
    );
    assert.ok(versions.every((x) => x.region === 'nyc3' && x.volumeId === 'vol-id-1' && x.origin === 'sync'));
    assert.deepEqual(
      versions.map((x) => x.runId),
      Array.from({ length: 12 }, (_, i) => `run-${i + 1}`),
    );
    assert.ok(versions.slice(1).every((x) => (x.blocksChanged ?? 0) > 0));
    // The current manifest is the newest version's, byte for byte.
    const current = await readFile(join(v.backups, '.dosvob', 'vol1', 'manifest'));
    assert.ok(current.equals(await readFile(versions[11]!.manifestPath)));

    assert.equal(await v.assertAllRestore(), 12);

    // Older versions cost only what changed, never a zero block, and each distinct block once.
    const chunks = await listChunks(v.backups);
    const chunkBytes = chunks.reduce((s, c) => s + c.sizeBytes, 0);
    assert.ok(chunkBytes <= changedBytes, `chunks ${chunkBytes} bytes for ${changedBytes} bytes changed`);
    assert.ok(chunks.length > 0);
    for (const c of chunks) {
      const data = await readFile(c.path);
      assert.equal(createHash('sha256').update(data).digest('hex'), c.hash);
      assert.ok(!createHash('sha256').update(data).digest().equals(zeroHash(data.length)), 'no zero chunk');
    }
    await assertChunksSound(v.backups);
  });

  void test('a restore reads unchanged blocks from the image and checks every block; a damaged one is refused', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 16 * BLOCK);
    await v.sync();
    await v.write(3 * BLOCK, randomBytes(BLOCK));
    await v.sync();
    const [older, newer] = await listVersions(v.backups, 'vol1');
    const r = await restoreVersion(v.backups, 'vol1', older!.versionId, join(v.dir, 'old.img'));
    assert.equal(r.blocksFromChunks, 1, 'only the overwritten block comes from the chunk store');
    assert.ok(r.blocksFromImage >= 9);
    assert.equal(r.reflinked, false, 'ext4/tmpfs here: a sparse copy');
    const rn = await restoreVersion(v.backups, 'vol1', newer!.versionId, join(v.dir, 'new.img'));
    assert.equal(rn.blocksFromChunks, 0);
    assert.ok(await filesEqual(v.device, join(v.dir, 'new.img')));
    // The restored file is sparse like the image.
    assert.ok((await stat(join(v.dir, 'new.img'))).blocks * 512 <= (await stat(v.device)).blocks * 512 + 64 * 1024);

    // Damage the only copy of block 3's old content: the old version can no longer be read, and says which block.
    const hash = (await chunksNeeded(v.backups, 'vol1', [older!.versionId])).get(older!.versionId)!;
    const [hex] = [...hash.keys()];
    const p = chunkPath(v.backups, hex!);
    const buf = await readFile(p);
    buf.writeUInt8(buf.readUInt8(100) ^ 0xff, 100);
    await writeFile(p, buf);
    await assert.rejects(
      restoreVersion(v.backups, 'vol1', older!.versionId, join(v.dir, 'old2.img')),
      (err: unknown) => {
        assert.ok(err instanceof VersionDamagedError, String(err));
        assert.equal(err.block, 3);
        return true;
      },
    );
    await assert.rejects(stat(join(v.dir, 'old2.img')), 'no half-restored file under the asked name');
    await assert.rejects(stat(join(v.dir, 'old2.img.partial')), 'nor a partial one left behind');
  });

  void test('verifyChunks finds a corrupted chunk, moves it aside and names exactly the versions it breaks', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 24 * BLOCK);
    const next = rng(7);
    for (let k = 0; k < 5; k++) {
      if (k > 0) await v.mutate(next);
      await v.sync();
    }
    const versions = await listVersions(v.backups, 'vol1');
    const needed = await chunksNeeded(v.backups, 'vol1');
    const chunks = await listChunks(v.backups);
    // The chunk needed by the most versions (so the expectation is not trivially one version).
    const count = (h: string) => [...needed.values()].filter((m) => m?.has(h)).length;
    const victim = [...chunks].sort((a, b) => count(b.hash) - count(a.hash))[0]!;
    const expected = versions.filter((x) => needed.get(x.versionId)?.has(victim.hash)).map((x) => x.versionId);
    assert.ok(expected.length >= 1);
    const buf = await readFile(victim.path);
    buf.writeUInt8(buf.readUInt8(0) ^ 1, 0);
    await writeFile(victim.path, buf);

    // Sliced: the slice that does not hold it finds nothing bad; the two slices together check every chunk.
    const slices = [await verifyChunks(v.backups, { subset: { n: 1, of: 2 } })];
    slices.push(await verifyChunks(v.backups, { subset: { n: 2, of: 2 } }));
    assert.equal(slices[0]!.checked + slices[1]!.checked, chunks.length);
    const found = slices.find((s) => s.bad.length > 0)!;
    assert.deepEqual(
      found.bad.map((b) => b.hash),
      [victim.hash],
    );
    assert.equal(found.bad[0]!.movedTo, `${victim.path}.bad`);
    await assert.rejects(stat(victim.path), 'moved aside');
    assert.deepEqual(found.brokenVersions.map((b) => b.versionId).sort(), [...expected].sort());
    assert.ok(found.brokenVersions.every((b) => b.missingChunks.includes(victim.hash)));
    // Nothing else is broken: every other version still restores byte-exact.
    for (const id of expected) v.states.delete(id);
    await v.assertAllRestore();
    // A later verify (no more bad chunks) still reports the versions as broken: the chunk is gone.
    const again = await verifyChunks(v.backups);
    assert.deepEqual(again.bad, []);
    assert.deepEqual(again.brokenVersions.map((b) => b.versionId).sort(), [...expected].sort());
  });

  void test('protect, remove (never the newest, atomically), and the bytes each version alone holds', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 16 * BLOCK);
    await v.sync();
    // Blocks 1, 3 and 4 hold data in the fixture. S goes from block 1 (v2) to block 4 (v3): one chunk serves both.
    const S = randomBytes(BLOCK);
    await v.write(1 * BLOCK, S);
    await v.write(3 * BLOCK, randomBytes(BLOCK));
    await v.sync(); // v2
    await v.write(1 * BLOCK, randomBytes(BLOCK));
    await v.write(4 * BLOCK, S);
    await v.sync(); // v3: v2's block 1 (S) saved
    await v.write(4 * BLOCK, randomBytes(BLOCK));
    await v.write(3 * BLOCK, randomBytes(BLOCK));
    await v.sync(); // v4: v3's block 4 is S again: already kept, not stored twice
    const [v1, v2, v3, v4] = await listVersions(v.backups, 'vol1');

    const sHex = createHash('sha256').update(S).digest('hex');
    const needed = await chunksNeeded(v.backups, 'vol1');
    assert.ok(needed.get(v2!.versionId)!.has(sHex) && needed.get(v3!.versionId)!.has(sHex));
    assert.equal((await listChunks(v.backups)).filter((c) => c.hash === sHex).length, 1);
    const usage = await storeUsage(v.backups);
    const u = new Map(usage.versions.map((x) => [x.versionId, x]));
    // Block 4's first content is v2's too (v2 left it as it was).
    assert.equal(u.get(v1!.versionId)!.uniqueBytes, 2 * BLOCK, 'v1 alone has the first contents of blocks 1 and 3');
    assert.equal(u.get(v2!.versionId)!.uniqueBytes, 0, 'what v2 needs, v3 needs too');
    assert.equal(u.get(v3!.versionId)!.uniqueBytes, 0);
    assert.equal(u.get(v4!.versionId)!.uniqueBytes, 0, 'the newest is the image');
    assert.equal(
      usage.chunkBytes,
      (await listChunks(v.backups)).reduce((s, c) => s + c.sizeBytes, 0),
    );
    assert.equal(usage.chunkCount, 5, 'the first contents of blocks 1, 3, 4, then S, and v2 block 3');
    assert.equal(usage.unreferencedChunks, 0);
    assert.ok(usage.imageApparentBytes === 16 * BLOCK && usage.imageBytes > 0);
    assert.equal(usage.totalBytes, usage.imageBytes + usage.chunkBytes + usage.manifestBytes);

    await setProtected(v.backups, 'vol1', v2!.versionId, true);
    assert.equal((await listVersions(v.backups, 'vol1'))[1]!.protected, true);
    await assert.rejects(removeVersionManifests(v.backups, 'vol1', [v4!.versionId]), /newest/);
    await assert.rejects(removeVersionManifests(v.backups, 'vol1', [v2!.versionId]), /protected/);
    // A refused batch removes nothing.
    await assert.rejects(removeVersionManifests(v.backups, 'vol1', [v1!.versionId, v4!.versionId]), /newest/);
    assert.equal((await listVersions(v.backups, 'vol1')).length, 4);

    assert.deepEqual(await removeVersionManifests(v.backups, 'vol1', [v1!.versionId, v3!.versionId]), [
      v1!.versionId,
      v3!.versionId,
    ]);
    assert.deepEqual(await removeVersionManifests(v.backups, 'vol1', [v1!.versionId]), [], 'idempotent');
    const left = await listVersions(v.backups, 'vol1');
    assert.deepEqual(
      left.map((x) => x.versionId),
      [v2!.versionId, v4!.versionId],
    );
    v.states.delete(v1!.versionId);
    v.states.delete(v3!.versionId);
    await v.assertAllRestore();
    // What only the removed versions needed is now garbage (for GC), and counted as such.
    const after = await storeUsage(v.backups);
    assert.equal(after.unreferencedBytes, 2 * BLOCK);
    await setProtected(v.backups, 'vol1', v2!.versionId, false);
    assert.equal((await listVersions(v.backups, 'vol1'))[0]!.protected, false);
  });

  void test('readVersionBlocks yields every block checked, saying where it came from', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 8 * BLOCK);
    await v.sync();
    await v.write(0, randomBytes(BLOCK));
    await v.sync();
    const [older] = await listVersions(v.backups, 'vol1');
    const sources: string[] = [];
    const h = createHash('sha256');
    for await (const b of readVersionBlocks(v.backups, 'vol1', older!.versionId)) {
      sources.push(b.source);
      h.update(b.data);
    }
    assert.equal(sources.length, 8);
    assert.equal(sources[0], 'chunk');
    assert.equal(sources[2], 'zero'); // the fixture leaves every third block empty
    const out = join(v.dir, 'o.img');
    await restoreVersion(v.backups, 'vol1', older!.versionId, out);
    assert.equal(
      h.digest('hex'),
      createHash('sha256')
        .update(await readFile(out))
        .digest('hex'),
    );
    assert.equal(await contentDigest(out), v.states.get(older!.versionId));
    assert.equal((await verifyImage(v.backups, 'vol1')).ok, true);
  });
});
