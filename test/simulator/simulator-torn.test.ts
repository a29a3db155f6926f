// The `tornSnapshots` fault: a snapshot taken "while writes are in flight" has an ext4 group descriptor torn in its
// own file, so e2fsck -fn fails on it; the volume itself, an earlier snapshot sharing its bytes, and the snapshots
// after the fault is used up are left whole.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { findBinary, defaultSearchPath } from '../../activities/verify/checkers';
import { fileState, formatExt4, missingTools } from '../verify/support';
import { startSimulator, type Simulator } from './index';
import { NO_RATE_LIMIT, api, str } from './test-helpers';

const run = promisify(execFile);
const noExt4 = missingTools('mkfs.ext4', 'e2fsck');
let sim: Simulator;

before(async () => {
  sim = await startSimulator({ ...NO_RATE_LIMIT, snapshotIntervalMs: 0, sshPort: 0, seed: 5 });
});
after(async () => {
  await sim?.close();
});

async function snapshot(volumeId: string, name: string): Promise<string> {
  const r = await api(sim, 'POST', `/v2/volumes/${volumeId}/snapshots`, { name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return str(r.body, 'snapshot', 'id');
}

/** e2fsck -fn's exit code on a file. */
async function e2fsck(file: string): Promise<number> {
  const bin = (await findBinary('e2fsck', defaultSearchPath()))!;
  try {
    await run(bin, ['-fn', file]);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  }
}

void test('a torn snapshot fails e2fsck; the volume and the other snapshots stay whole', { skip: noExt4 }, async () => {
  const v = await sim.createVolume({ name: 'torn-ext4', region: 'nyc1', sizeGigabytes: 1 });
  await formatExt4(sim.volumeFile(v.id));
  const volumeBefore = await fileState(sim.volumeFile(v.id));

  const clean = await snapshot(v.id, 'clean');
  sim.setFaults({ tornSnapshots: 1 });
  const torn = await snapshot(v.id, 'in-flight');
  assert.equal(sim.faults.tornSnapshots, 0, 'the fault counts down');
  const after = await snapshot(v.id, 'after');

  assert.equal(await e2fsck(sim.snapshotFile(clean)), 0);
  assert.equal(await e2fsck(sim.snapshotFile(torn)), 4, 'errors left uncorrected');
  assert.equal(await e2fsck(sim.snapshotFile(after)), 0, 'only the next snapshot is torn');
  assert.equal(await fileState(sim.volumeFile(v.id)), volumeBefore, 'the volume itself is not torn');
  assert.equal(await e2fsck(sim.volumeFile(v.id)), 0);
});

void test('a snapshot whose file is shared with its volume is copied before it is torn', { skip: noExt4 }, async () => {
  const v = await sim.createVolume({ name: 'torn-shared', region: 'nyc1', sizeGigabytes: 1 });
  await formatExt4(sim.volumeFile(v.id));
  const base = await snapshot(v.id, 'base');
  // A volume made from a snapshot shares its file: its own snapshot would be one more link to the same bytes.
  const r = await api(sim, 'POST', '/v2/volumes', {
    name: 'from-base',
    region: 'nyc1',
    size_gigabytes: 1,
    snapshot_id: base,
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const copy = str(r.body, 'volume', 'id');
  assert.equal(await sim.volumeSharesSnapshotFile(copy), true);
  sim.setFaults({ tornSnapshots: 1 });
  const torn = await snapshot(copy, 'torn-of-copy');
  assert.equal(await e2fsck(sim.snapshotFile(torn)), 4);
  assert.equal(await e2fsck(sim.volumeFile(copy)), 0, 'the volume sharing the bytes is whole');
  assert.equal(await e2fsck(sim.snapshotFile(base)), 0, 'so is the snapshot it was made from');
});

void test('a snapshot with no ext filesystem is left as it is', async () => {
  const v = await sim.createVolume({ name: 'torn-raw', region: 'nyc1', sizeGigabytes: 1 });
  await sim.writeVolume(v.id, 0, Buffer.alloc(8192, 0x5a));
  sim.setFaults({ tornSnapshots: 1 });
  const s = await snapshot(v.id, 'raw');
  assert.equal(sim.faults.tornSnapshots, 0, 'the fault was spent on it');
  const fh = await open(sim.snapshotFile(s), 'r');
  const head = Buffer.alloc(16384);
  await fh.read(head, 0, head.length, 0);
  await fh.close();
  assert.deepEqual(head.subarray(0, 8192), Buffer.alloc(8192, 0x5a));
  assert.deepEqual(head.subarray(8192), Buffer.alloc(8192));
});
