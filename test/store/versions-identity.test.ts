// Whose backup is whose: same-named volumes of two regions get their own image and versions, a re-created volume is a
// new lineage of its key whose predecessor's versions stay readable, and a store of the previous format is upgraded in
// place (its image becoming its first version) while a newer format is refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  StoreFormatError,
  claimStoreKey,
  decodeManifest,
  encodeManifest,
  listStoreIdentities,
  listVersions,
  readIdentity,
  storePaths,
  verifyImage,
} from '../../activities/store/index.js';
import { filesEqual, makeDevice, dropletFixture } from '../transfer/helpers.js';
import { BLOCK, TestVolume, assertChunksSound, rng } from './support.js';

const fx = dropletFixture('dosvob-versions-id-');

void describe('kept versions: identity', { concurrency: false }, () => {
  void test('two volumes named alike in two regions each have their own image and versions', async () => {
    const root = fx.dir();
    const nyc = await TestVolume.create(fx.d, join(root, 'nyc'), 20 * BLOCK, {
      volumeName: 'data',
      volumeId: 'id-nyc',
      region: 'nyc3',
    });
    const fra = await TestVolume.create(fx.d, join(root, 'fra'), 28 * BLOCK, {
      volumeName: 'data',
      volumeId: 'id-fra',
      region: 'fra1',
    });
    Object.assign(fra, { backups: nyc.backups });
    const next = rng(3);
    for (let k = 0; k < 3; k++) {
      if (k > 0) {
        await nyc.mutate(next);
        await fra.mutate(next);
      }
      const a = await nyc.sync();
      const b = await fra.sync();
      assert.equal(a.storeKey, 'data');
      assert.equal(b.storeKey, 'data@fra1');
      assert.equal(a.imagePath, join(nyc.backups, 'data.img'));
      assert.equal(b.imagePath, join(nyc.backups, 'data@fra1.img'));
      assert.ok(await filesEqual(nyc.device, a.imagePath));
      assert.ok(await filesEqual(fra.device, b.imagePath));
    }
    assert.deepEqual(await readIdentity(nyc.backups, 'data'), {
      ...(await readIdentity(nyc.backups, 'data')),
      key: 'data',
      name: 'data',
      region: 'nyc3',
    });
    assert.equal((await readIdentity(nyc.backups, 'data@fra1'))?.region, 'fra1');
    assert.deepEqual(
      (await listStoreIdentities(nyc.backups)).map((i) => [i.key, i.name, i.region]),
      [
        ['data', 'data', 'nyc3'],
        ['data@fra1', 'data', 'fra1'],
      ],
    );
    const nv = await listVersions(nyc.backups, 'data');
    const fv = await listVersions(nyc.backups, 'data@fra1');
    assert.equal(nv.length, 3);
    assert.equal(fv.length, 3);
    assert.ok(nv.every((v) => v.region === 'nyc3' && v.volumeId === 'id-nyc'));
    assert.ok(fv.every((v) => v.region === 'fra1' && v.volumeId === 'id-fra'));
    assert.equal(await nyc.assertAllRestore('data'), 3);
    assert.equal(await fra.assertAllRestore('data@fra1'), 3);
    await assertChunksSound(nyc.backups);
  });

  void test('claiming a name is atomic, and keys never hold a path', async () => {
    const backups = join(fx.dir(), 'backups');
    await mkdir(backups, { recursive: true });
    const keys = await Promise.all(['nyc3', 'fra1', 'sfo3', 'ams3'].map((r) => claimStoreKey(backups, 'db', r)));
    assert.equal(keys.filter((k) => k === 'db').length, 1, `one region gets the plain name: ${keys.join(', ')}`);
    assert.equal(new Set(keys).size, 4);
    const again = await Promise.all(['nyc3', 'fra1', 'sfo3', 'ams3'].map((r) => claimStoreKey(backups, 'db', r)));
    assert.deepEqual(again, keys, 'stable');
    assert.equal(await claimStoreKey(backups, 'db', undefined), 'db', 'an input without a region: the plain name');
    for (const bad of ['../x', 'a/b', '..', '.hidden', 'a@b']) {
      await assert.rejects(claimStoreKey(backups, bad, 'nyc3'), /invalid volume name/, bad);
    }
    await assert.rejects(claimStoreKey(backups, 'ok', '../x'), /invalid region/);
    for (const bad of ['a@b@c', 'a@../b', 'x/y@nyc3', '.chunks']) assert.throws(() => storePaths(backups, bad), bad);
  });

  void test('a volume re-created under the same name is a new lineage; the old one stays readable', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 24 * BLOCK, { region: 'nyc3', volumeId: 'id-old' });
    await v.sync();
    await v.mutate(rng(9));
    await v.sync();
    // Deleted and made again: other content, another size, another id.
    await rm(v.device);
    await makeDevice(v.device, 30 * BLOCK, BLOCK, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    const r = await v.sync({ volumeId: 'id-new' });
    assert.equal(r.storeKey, 'vol1');
    assert.equal(r.firstSync, false, 'an incremental over the old image (whose blocks are kept)');
    await v.write(0, randomBytes(BLOCK));
    await v.sync({ volumeId: 'id-new' });
    const versions = await listVersions(v.backups, 'vol1');
    assert.deepEqual(
      versions.map((x) => x.volumeId),
      ['id-old', 'id-old', 'id-new', 'id-new'],
    );
    assert.equal(await v.assertAllRestore(), 4);
    await assertChunksSound(v.backups);
  });
});

/** Rewrite a store the way dosvob format 1 left it: manifest of format 1 (no version fields), no versions, no identity. */
async function toFormat1(backups: string, key: string): Promise<void> {
  const paths = storePaths(backups, key);
  const m = decodeManifest(await readFile(paths.manifest));
  const { versionId: _v, region: _r, runId: _run, blocksChanged: _b, ...rest } = m.header;
  await writeFile(paths.manifest, encodeManifest({ header: { ...rest, formatVersion: 1 }, hashes: m.hashes }));
  await rm(paths.versions, { recursive: true, force: true });
  await rm(paths.identity, { force: true });
}

void describe('kept versions: store format', { concurrency: false }, () => {
  void test('a format-1 store is upgraded in place: its image becomes version 1 and a later sync works', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 24 * BLOCK);
    const r1 = await v.sync();
    const imageBefore = await readFile(r1.imagePath);
    await toFormat1(v.backups, 'vol1');
    // An uncommitted transfer of the old format is dropped (it restarts); it must not block the upgrade.
    const paths = storePaths(v.backups, 'vol1');
    await mkdir(paths.staging, { recursive: true });
    await writeFile(paths.plan, JSON.stringify({ formatVersion: 1, stagingId: 'old' }));
    const oldDigest = v.states.get(r1.versionId!)!;
    v.states.clear();

    await v.write(2 * BLOCK, randomBytes(BLOCK));
    await v.write(5 * BLOCK + 100, randomBytes(3000));
    const r2 = await v.sync({ region: 'nyc3' });
    assert.equal(r2.adopted, false, 'the image was not re-hashed: its manifest was kept');
    assert.equal(r2.blocksChanged, 2, 'an incremental against the upgraded manifest');
    const versions = await listVersions(v.backups, 'vol1');
    assert.equal(versions.length, 2);
    assert.equal(versions[0]!.origin, 'upgraded');
    assert.equal(versions[0]!.snapshotId, 'snap-1');
    assert.equal(versions[1]!.origin, 'sync');
    v.states.set(versions[0]!.versionId, oldDigest);
    assert.equal(await v.assertAllRestore(), 2);
    const restored = join(v.dir, 'v1.img');
    const { restoreVersion } = await import('../../activities/store/index.js');
    await restoreVersion(v.backups, 'vol1', versions[0]!.versionId, restored);
    assert.ok((await readFile(restored)).equals(imageBefore), 'version 1 is the image as it was');
    assert.equal((await verifyImage(v.backups, 'vol1')).ok, true);
    assert.equal((await readIdentity(v.backups, 'vol1'))?.region, 'nyc3', 'claimed by its first sync with a region');
    await assertChunksSound(v.backups);
  });

  void test('a store of a newer format is refused with a clear message, untouched', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 8 * BLOCK);
    await v.sync();
    const paths = storePaths(v.backups, 'vol1');
    const buf = await readFile(paths.manifest);
    buf.writeUInt32BE(3, 8);
    await writeFile(paths.manifest, buf);
    const imageBefore = await readFile(paths.image);
    const mtime = (await stat(paths.image)).mtimeMs;
    await v.write(0, randomBytes(BLOCK));
    await assert.rejects(v.sync(), (err: unknown) => {
      assert.ok(err instanceof StoreFormatError, String(err));
      assert.match(err.message, /format 3, this dosvob uses format 2 \(a newer dosvob wrote it: upgrade dosvob\)/);
      return true;
    });
    assert.ok((await readFile(paths.image)).equals(imageBefore));
    assert.equal((await stat(paths.image)).mtimeMs, mtime);
    assert.equal((await listVersions(v.backups, 'vol1')).length, 1, 'its versions untouched');
  });
});
