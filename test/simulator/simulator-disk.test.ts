// Real bytes: sparse volumes, frozen snapshots (sparse copies), volumes from snapshots as hardlinks with
// copy-on-write, and a source volume deleted behind dosvob's back.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { after, before, test } from 'node:test';
import { startSimulator, type Simulator } from './index';
import { NO_RATE_LIMIT, api, contentDigest, num, str } from './test-helpers';

let sim: Simulator;
const GIB = 1024 ** 3;

before(async () => {
  sim = await startSimulator({ ...NO_RATE_LIMIT, snapshotIntervalMs: 0, sshPort: 0, seed: 3 });
});

after(async () => {
  await sim.close();
});

async function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  const h = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    await h.read(buf, 0, length, offset);
    return buf;
  } finally {
    await h.close();
  }
}

const pattern = (n: number, seed: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

async function snapshot(volumeId: string, name: string): Promise<string> {
  const r = await api(sim, 'POST', `/v2/volumes/${volumeId}/snapshots`, { name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return str(r.body, 'snapshot', 'id');
}

void test('a volume is a sparse file of its full size', async () => {
  const v = await sim.createVolume({ name: 'sparse', region: 'nyc1', sizeGigabytes: 2 });
  const st = await fs.stat(sim.volumeFile(v.id));
  assert.equal(st.size, 2 * GIB);
  assert.ok(st.blocks * 512 < 1024 * 1024, `allocated ${st.blocks * 512}`);
});

void test('a snapshot freezes the bytes; it is a sparse copy', async () => {
  const v = await sim.createVolume({ name: 'frozen', region: 'nyc1', sizeGigabytes: 2 });
  const early = pattern(3 * 1024 * 1024, 1);
  await sim.writeVolume(v.id, 0, early);
  await sim.writeVolume(v.id, GIB + 12345, Buffer.from('middle'));
  const s1 = await snapshot(v.id, 'first');
  // Quick because sparse: only the written extents are copied (checked on the blocks, not on a clock).
  const sst = await fs.stat(sim.snapshotFile(s1));
  assert.equal(sst.size, 2 * GIB);
  assert.ok(sst.blocks * 512 < 8 * 1024 * 1024, `snapshot allocates ${sst.blocks * 512} bytes`);
  const got = await api(sim, 'GET', `/v2/snapshots/${s1}`);
  assert.equal(num(got.body, 'snapshot', 'min_disk_size'), 2);
  assert.ok(num(got.body, 'snapshot', 'size_gigabytes') > 0 && num(got.body, 'snapshot', 'size_gigabytes') < 0.02);

  const before = await contentDigest(sim.snapshotFile(s1));
  await sim.writeVolume(v.id, 0, pattern(4096, 9));
  assert.equal(await contentDigest(sim.snapshotFile(s1)), before, 'later writes do not reach the snapshot');
  assert.notEqual(await contentDigest(sim.volumeFile(v.id)), before);
  assert.deepEqual(await sim.readVolume(v.id, GIB + 12345, 6), Buffer.from('middle'));
});

void test('a volume from a snapshot shares its file until written (copy-on-write)', async () => {
  const v = await sim.createVolume({ name: 'cow-src', region: 'nyc1', sizeGigabytes: 1 });
  await sim.writeVolume(v.id, 1024 * 1024, pattern(1024 * 1024, 5));
  const s = await snapshot(v.id, 'cow');
  const snapHash = await contentDigest(sim.snapshotFile(s));
  const r = await api(sim, 'POST', '/v2/volumes', { name: 'cow-copy', region: 'nyc1', snapshot_id: s });
  assert.equal(r.status, 201);
  const copy = str(r.body, 'volume', 'id');
  const [a, b] = await Promise.all([fs.stat(sim.volumeFile(copy)), fs.stat(sim.snapshotFile(s))]);
  assert.equal(a.ino, b.ino, 'hardlinked: no bytes copied');
  assert.equal(await sim.volumeSharesSnapshotFile(copy), true);
  assert.equal(await contentDigest(sim.volumeFile(copy)), snapHash);

  // a snapshot of the untouched copy is another link to the same bytes
  const s2 = await snapshot(copy, 'of-copy');
  assert.equal((await fs.stat(sim.snapshotFile(s2))).ino, b.ino);

  await sim.writeVolume(copy, 0, Buffer.from('changed'));
  assert.equal(await sim.volumeSharesSnapshotFile(copy), false);
  assert.equal(await contentDigest(sim.snapshotFile(s)), snapHash, 'the snapshot keeps its bytes');
  assert.equal(await contentDigest(sim.snapshotFile(s2)), snapHash);
  assert.deepEqual(await sim.readVolume(copy, 0, 7), Buffer.from('changed'));
  assert.deepEqual(await sim.readVolume(copy, 1024 * 1024, 16), pattern(16, 5));
  const st = await fs.stat(sim.volumeFile(copy));
  assert.equal(st.size, GIB);
  assert.ok(st.blocks * 512 < 4 * 1024 * 1024, 'the copy stayed sparse');

  // deleting the snapshot leaves the volume made from it intact, and vice versa
  assert.equal((await api(sim, 'DELETE', `/v2/snapshots/${s2}`)).status, 204);
  assert.equal((await api(sim, 'DELETE', `/v2/volumes/${copy}`)).status, 204);
  assert.equal(await contentDigest(sim.snapshotFile(s)), snapHash);
  await assert.rejects(fs.stat(`${sim.dataDir}/snapshots/${s2}.img`));
});

void test('writes outside the volume are refused', async () => {
  const v = await sim.createVolume({ name: 'bounds', region: 'nyc1', sizeGigabytes: 1 });
  await assert.rejects(sim.writeVolume(v.id, GIB - 2, Buffer.from('xyz')), RangeError);
});

void test('a source volume deleted behind the scenes: gone from the API and the disk, snapshots survive', async () => {
  const v = await sim.createVolume({ name: 'vanishing', region: 'nyc1', sizeGigabytes: 1 });
  await sim.writeVolume(v.id, 0, Buffer.from('bye'));
  const s = await snapshot(v.id, 'last');
  const file = sim.volumeFile(v.id);
  await sim.deleteVolumeBehindTheScenes(v.id);
  assert.equal((await api(sim, 'GET', `/v2/volumes/${v.id}`)).status, 404);
  assert.equal((await api(sim, 'POST', `/v2/volumes/${v.id}/snapshots`, { name: 'again' })).status, 404);
  await assert.rejects(fs.stat(file));
  const snap = await api(sim, 'GET', `/v2/volumes/snapshots/${s}`);
  assert.equal(str(snap.body, 'snapshot', 'resource_id'), v.id);
  assert.deepEqual(await readAt(sim.snapshotFile(s), 0, 3), Buffer.from('bye'));
});

void test('close() removes the temp data dir', async () => {
  const other = await startSimulator({ sshPort: 0 });
  await other.createVolume({ name: 'tmp', region: 'nyc1', sizeGigabytes: 1 });
  const dir = other.dataDir;
  await other.close();
  await assert.rejects(fs.stat(dir));
});

void test('the test digest: equal content gives equal digests however zeros are stored', async () => {
  const dir = await fs.mkdtemp(`${sim.dataDir}/digest-`);
  const sparse = `${dir}/sparse`;
  const dense = `${dir}/dense`;
  await fs.writeFile(sparse, '');
  await fs.truncate(sparse, 1024 * 1024);
  const h = await fs.open(sparse, 'r+');
  await h.write(Buffer.from('x'), 0, 1, 500_000);
  await h.close();
  const bytes = Buffer.alloc(1024 * 1024);
  bytes[500_000] = 'x'.charCodeAt(0);
  await fs.writeFile(dense, bytes);
  assert.equal(await contentDigest(sparse), await contentDigest(dense));
  bytes[1024 * 1024 - 1] = 1;
  await fs.writeFile(dense, bytes);
  assert.notEqual(await contentDigest(sparse), await contentDigest(dense));
  await fs.rm(dir, { recursive: true });
});
