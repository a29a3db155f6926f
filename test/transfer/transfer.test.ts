// The transfer core and the local store, end to end through a real SSH server.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { copyFile, readFile, stat, writeFile, open, mkdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { agentCode, agentCommand, pythonAgent } from '../../activities/transfer/agent.js';
import {
  ConnectionLostError,
  HostKeyMismatchError,
  ProtocolMismatchError,
  RemoteAgentError,
} from '../../activities/transfer/errors.js';
import { DiskFullError, StoreFormatError } from '../../activities/store/errors.js';
import { storePaths } from '../../activities/store/layout.js';
import { readManifest } from '../../activities/store/manifest.js';
import { VolumeStore, verifyImage } from '../../activities/store/store.js';
import { generateEd25519 } from '../support/exec-ssh-server.js';
import {
  MiB,
  allocatedBytes,
  baseOptions,
  filesEqual,
  makeDevice,
  mutateRegion,
  nonZeroBytes,
  resize,
  startDroplet,
  sync,
  tempDir,
  type Droplet,
} from './helpers.js';

const FILTER = join(__dirname, 'fixtures', 'filter.py');
const CHILD = join(__dirname, 'fixtures', 'apply-crash-child.ts');

let d: Droplet;
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;

before(async () => {
  d = await startDroplet();
  tmp = await tempDir();
});
after(async () => {
  await d.close();
  await tmp.cleanup();
});

/** A fresh device + backups dir per test. */
async function fixture(
  sizeBytes = 24 * MiB,
  fill: (i: number) => 'zero' | 'random' | Buffer = (i) => (i % 4 === 1 ? 'random' : 'zero'),
) {
  const dir = join(tmp.dir, `t${++n}`);
  await mkdir(dir, { recursive: true });
  const device = join(dir, 'device.img');
  await makeDevice(device, sizeBytes, MiB, fill);
  return { dir, device, backups: join(dir, 'backups') };
}

async function assertSparse(image: string, device: string): Promise<void> {
  const alloc = await allocatedBytes(image);
  const nz = await nonZeroBytes(device);
  assert.ok(alloc <= nz * 1.01 + 64 * 1024, `image allocates ${alloc} bytes for ${nz} non-zero bytes`);
}

void describe('transfer', { concurrency: false }, () => {
  void test('first sync: identical, sparse, verified manifest, only non-zero bytes on the wire', async () => {
    const f = await fixture(24 * MiB + 4096 * 3); // size not a multiple of the block size
    const r = await sync(d, f.backups, f.device);
    assert.ok(await filesEqual(f.device, r.imagePath), 'image equals device');
    assert.equal(r.firstSync, true);
    const nz = await nonZeroBytes(f.device);
    assert.ok(r.wireBytesReceived <= nz * 1.01 + 64 * 1024, `received ${r.wireBytesReceived} for ${nz} non-zero bytes`);
    await assertSparse(r.imagePath, f.device);
    const v = await verifyImage(f.backups, 'vol1');
    assert.equal(v.ok, true);
    assert.equal(v.manifest.header.snapshotId, 'snap-1');
    assert.equal(v.manifest.header.digest, r.digest);
    // nothing of the transfer is left behind
    await assert.rejects(stat(storePaths(f.backups, 'vol1').staging), { code: 'ENOENT' });
  });

  void test('incremental: only changed blocks travel, blocks that became zero become holes', async () => {
    const f = await fixture(32 * MiB);
    await sync(d, f.backups, f.device, { blockSize: MiB });
    await mutateRegion(f.device, MiB, 1, 'zero'); // was random -> zeros
    await mutateRegion(f.device, MiB, 5, 'random'); // was random -> other random
    await mutateRegion(f.device, MiB, 10, 'random'); // was zero -> random
    const imageBefore = await stat(storePaths(f.backups, 'vol1').image);
    const r = await sync(d, f.backups, f.device, { snapshotId: 'snap-2' });
    assert.ok(await filesEqual(f.device, r.imagePath));
    assert.equal(r.blocksChanged, 2);
    assert.equal(r.blocksZeroed, 1);
    assert.equal(r.blocksUnchanged, 29);
    assert.equal(r.bytesReadRemote, 32 * MiB);
    const changed = 2 * MiB;
    assert.ok(
      r.wireBytesReceived <= changed * 1.01 + 16 * 1024,
      `received ${r.wireBytesReceived} for ${changed} changed bytes`,
    );
    await assertSparse(r.imagePath, f.device);
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
    assert.equal(imageBefore.ino, (await stat(r.imagePath)).ino, 'updated in place');
  });

  void test('nothing changed: nothing but hashes and run records travel, the image is not touched', async () => {
    const f = await fixture(16 * MiB);
    await sync(d, f.backups, f.device);
    const image = storePaths(f.backups, 'vol1').image;
    const old = new Date('2020-01-01T00:00:00Z');
    await utimes(image, old, old); // atime/mtime markers (note: adoption would also re-stamp)
    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    await store.writeStamp();
    await store.release();
    const r = await sync(d, f.backups, f.device, { snapshotId: 'snap-2' });
    assert.equal(r.blocksChanged, 0);
    assert.equal(r.blocksZeroed, 0);
    assert.equal(r.adopted, false);
    assert.ok(r.wireBytesReceived < 32 * 1024, `received ${r.wireBytesReceived}`);
    const st = await stat(image);
    assert.equal(st.atimeMs, old.getTime(), 'image was not read');
    assert.equal(st.mtimeMs, old.getTime(), 'image was not written');
  });

  void test('grown and shrunk volumes (sizes not multiples of the block size)', async () => {
    const f = await fixture(10 * MiB + 777);
    await sync(d, f.backups, f.device, { blockSize: MiB });
    await resize(f.device, 20 * MiB + 4097);
    await mutateRegion(f.device, MiB, 15, 'random');
    let r = await sync(d, f.backups, f.device, { snapshotId: 'snap-2' });
    assert.ok(await filesEqual(f.device, r.imagePath), 'grown');
    assert.equal(r.sizeBytes, 20 * MiB + 4097);
    assert.ok(r.blocksChanged <= 2, `changed ${r.blocksChanged}`);
    await resize(f.device, 6 * MiB + 5);
    r = await sync(d, f.backups, f.device, { snapshotId: 'snap-3' });
    assert.ok(await filesEqual(f.device, r.imagePath), 'shrunk');
    assert.equal((await stat(r.imagePath)).size, 6 * MiB + 5);
    assert.ok(r.blocksChanged <= 1, `changed ${r.blocksChanged}`);
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
  });

  void test('a dropped connection is resumed in-process without re-sending what arrived', async () => {
    const f = await fixture(48 * MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    d.faults.dropAfterBytes = 8 * MiB;
    const r = await sync(d, f.backups, f.device, { stripes: 1, blockSize: MiB });
    assert.equal(d.faults.dropAfterBytes, undefined, 'the fault fired');
    assert.equal(r.reconnects, 1);
    assert.ok(await filesEqual(f.device, r.imagePath));
    const nz = await nonZeroBytes(f.device);
    // The cut may lose what was in flight (at most the agent's read-ahead and the channel window).
    assert.ok(r.wireBytesReceived <= nz + 4 * MiB, `received ${r.wireBytesReceived} for ${nz}`);
  });

  void test('an interrupted transfer leaves the previous image; the next attempt resumes from the staging log', async () => {
    const f = await fixture(48 * MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    await sync(d, f.backups, f.device, { blockSize: MiB });
    const previous = join(f.dir, 'previous.img');
    await copyFile(f.device, previous);
    for (let i = 0; i < 48; i += 2) await mutateRegion(f.device, MiB, i, 'random'); // 24 MiB changed
    d.faults.dropAfterBytes = 12 * MiB;
    await assert.rejects(
      sync(d, f.backups, f.device, { snapshotId: 'snap-2', stripes: 1, maxReconnects: 0, checkpointBytes: MiB }),
      ConnectionLostError,
    );
    assert.ok(await filesEqual(previous, storePaths(f.backups, 'vol1').image), 'previous image intact');
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true, 'previous manifest intact');
    const r = await sync(d, f.backups, f.device, { snapshotId: 'snap-2', stripes: 1 });
    assert.equal(r.resumed, true);
    // One stripe: the blocks it resumed past are the block it resumed from.
    assert.ok(r.resumedBlocks >= 16, `resumed from block ${r.resumedBlocks}`);
    assert.ok(await filesEqual(f.device, r.imagePath));
    const resent = r.wireBytesReceived;
    assert.ok(resent <= 24 * MiB - 10 * MiB, `second attempt received ${resent}`);
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
  });

  void test('compressible blocks travel zlib-compressed with compression auto, and arrive identical', async () => {
    const text = (seed: number) =>
      Buffer.from(
        Array.from({ length: 40_000 }, (_, k) => `${seed}:${k} GET /api/items/${(k * 7919) % 10_007} 200\n`).join(''),
      ).subarray(0, MiB);
    const f = await fixture(8 * MiB, (i) => (i % 2 === 0 ? text(i) : 'random')); // 4 MiB text, 4 MiB random
    const auto = await sync(d, f.backups, f.device, { stripes: 1, blockSize: MiB, compression: 'auto' });
    assert.ok(await filesEqual(f.device, auto.imagePath), 'first sync identical');
    assert.ok(auto.wireBytesReceived < 5 * MiB, `auto: ${auto.wireBytesReceived} bytes received for 8 MiB`);
    const raw = await sync(d, join(f.dir, 'backups-never'), f.device, {
      stripes: 1,
      blockSize: MiB,
      compression: 'never',
    });
    assert.ok(raw.wireBytesReceived > 8 * MiB, `never: ${raw.wireBytesReceived} bytes received for 8 MiB`);
    const fh = await open(f.device, 'r+');
    await fh.write(text(99), 0, MiB, 2 * MiB);
    await fh.close();
    const inc = await sync(d, f.backups, f.device, { snapshotId: 'snap-2', blockSize: MiB, compression: 'auto' });
    assert.equal(inc.blocksChanged, 1);
    assert.ok(inc.wireBytesReceived < MiB / 2, `incremental: ${inc.wireBytesReceived} bytes for one text block`);
    assert.ok(await filesEqual(f.device, inc.imagePath), 'incremental identical');
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
  });

  void test('a block corrupted on the way is detected and fetched again', async () => {
    const f = await fixture(16 * MiB, () => 'random');
    const marker = join(f.dir, 'flipped');
    // Output byte 3 MiB + 1000 is inside a data block's payload (record headers are 38 bytes per MiB block).
    d.faults.wrap = (command) => ({
      file: 'sh',
      args: ['-c', `${command} | python3 ${FILTER} --flip-at ${3 * MiB + 1000} --marker ${marker}`],
    });
    try {
      const r = await sync(d, f.backups, f.device, { stripes: 1, blockSize: MiB, compression: 'never' });
      assert.equal(r.refetchedBlocks, 1);
      assert.ok(await filesEqual(f.device, r.imagePath));
      assert.equal((await stat(marker)).isFile(), true, 'the fault fired');
    } finally {
      d.faults.wrap = undefined;
    }
  });

  void test('a crash in the middle of the apply step is finished at the next start', async () => {
    const f = await fixture(32 * MiB, (i) => (i % 2 === 0 ? 'random' : 'zero'));
    await sync(d, f.backups, f.device, { blockSize: MiB });
    for (let i = 0; i < 32; i += 4) await mutateRegion(f.device, MiB, i, 'random'); // 8 data records
    await mutateRegion(f.device, MiB, 2, 'zero');
    const opts = { ...baseOptions(d, f.backups, f.device), snapshotId: 'snap-2', stripes: 1, killAtRecord: 4 };
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(opts)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('close', (_code, sig) => resolve(sig)),
    );
    assert.equal(signal, 'SIGKILL', `child was to be killed mid-apply: ${out}`);
    const paths = storePaths(f.backups, 'vol1');
    assert.ok((await stat(paths.commit)).isFile(), 'the commit record survived');
    assert.equal(await filesEqual(f.device, paths.image), false, 'the image is half applied');
    assert.equal((await readManifest(paths.manifest)).header.snapshotId, 'snap-1');
    // The lock of the dead process is stale: open() takes it over and finishes the apply.
    const store = await VolumeStore.open({ backupsDir: f.backups, volumeName: 'vol1' });
    assert.equal(store.recovery, 'applied');
    assert.equal(store.manifest?.header.snapshotId, 'snap-2');
    await store.release();
    assert.ok(await filesEqual(f.device, paths.image), 'image whole after recovery');
    assert.equal((await verifyImage(f.backups, 'vol1')).ok, true);
    await assertSparse(paths.image, f.device);
  });

  void test('a wrong host key is refused before anything is sent', async () => {
    const f = await fixture(4 * MiB);
    const other = generateEd25519();
    await assert.rejects(
      sync(d, f.backups, f.device, {
        ssh: { ...baseOptions(d, f.backups, f.device).ssh, hostPublicKey: other.publicKey },
      }),
      (err) => {
        assert.ok(err instanceof HostKeyMismatchError, String(err));
        assert.match(err.message, /host key mismatch/);
        assert.equal(err.retryable, false);
        return true;
      },
    );
    await assert.rejects(stat(storePaths(f.backups, 'vol1').image), { code: 'ENOENT' });
  });

  void test('protocol version mismatch and a missing python3 are clear errors', async () => {
    const f = await fixture(4 * MiB);
    const fake = `python3 -c 'import sys,json,struct;sys.stdin.buffer.read(${agentCode().length});b=json.dumps({"protocol":99,"size":1}).encode();sys.stdout.buffer.write(b"H"+struct.pack(">I",len(b))+b)'`;
    await assert.rejects(sync(d, f.backups, f.device, { agent: { ...pythonAgent(), command: fake } }), (err) => {
      assert.ok(err instanceof ProtocolMismatchError, String(err));
      assert.match(err.message, /protocol 99/);
      return true;
    });
    await assert.rejects(
      sync(d, f.backups, f.device, { agent: { ...pythonAgent(), command: agentCommand('python3-missing-here') } }),
      (err) => {
        assert.ok(err instanceof RemoteAgentError, String(err));
        assert.equal(err.retryable, false);
        assert.match(err.message, /python3/);
        return true;
      },
    );
    await assert.rejects(sync(d, f.backups, join(f.dir, 'no-such-device')), (err) => {
      assert.ok(err instanceof RemoteAgentError, String(err));
      assert.match(err.message, /cannot open device/);
      return true;
    });
  });

  void test('a store of another format version is not touched without consent', async () => {
    const f = await fixture(8 * MiB);
    await sync(d, f.backups, f.device);
    const paths = storePaths(f.backups, 'vol1');
    const buf = await readFile(paths.manifest);
    buf.writeUInt32BE(99, 8);
    await writeFile(paths.manifest, buf);
    const imageBefore = await readFile(paths.image);
    await mutateRegion(f.device, MiB, 0, 'random');
    await assert.rejects(sync(d, f.backups, f.device, { snapshotId: 'snap-2' }), (err) => {
      assert.ok(err instanceof StoreFormatError, String(err));
      assert.match(err.message, /format 99.*allowFormatUpgrade/s);
      return true;
    });
    assert.ok((await readFile(paths.image)).equals(imageBefore), 'image untouched');
    const r = await sync(d, f.backups, f.device, { snapshotId: 'snap-2', allowFormatUpgrade: true });
    assert.equal(r.adopted, true);
    assert.ok(r.blocksChanged <= 4, `changed ${r.blocksChanged}`);
    assert.ok(await filesEqual(f.device, r.imagePath));
  });

  void test('an image without a manifest (or changed behind our back) is re-hashed and synced incrementally', async () => {
    const f = await fixture(16 * MiB);
    await mkdir(f.backups, { recursive: true });
    const image = join(f.backups, 'vol1.img');
    await copyFile(f.device, image);
    await mutateRegion(f.device, MiB, 3, 'random');
    let r = await sync(d, f.backups, f.device);
    assert.equal(r.adopted, true);
    assert.equal(r.blocksChanged, 4); // one 1 MiB region = four 256 KiB blocks
    assert.ok(await filesEqual(f.device, image));
    // someone writes into the image (e.g. a read-write loop mount)
    const fh = await open(image, 'r+');
    await fh.write(Buffer.from('scribble'), 0, 8, 5 * MiB);
    await fh.close();
    r = await sync(d, f.backups, f.device, { snapshotId: 'snap-2' });
    assert.equal(r.adopted, true);
    assert.ok(await filesEqual(f.device, image));
  });

  void test('a full local disk is a clear error and leaves the previous image', async (t) => {
    const mnt = join(tmp.dir, `small-${++n}`);
    await mkdir(mnt, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      t.skip('cannot mount a small tmpfs here');
      return;
    }
    try {
      const f = await fixture(16 * MiB, (i) => (i < 4 ? 'random' : 'zero'));
      await sync(d, mnt, f.device);
      const before = await readFile(join(mnt, 'vol1.img'));
      for (let i = 4; i < 12; i++) await mutateRegion(f.device, MiB, i, 'random');
      await assert.rejects(sync(d, mnt, f.device, { snapshotId: 'snap-2' }), (err) => {
        assert.ok(err instanceof DiskFullError, String(err));
        assert.match(err.message, /disk full|not enough free space/);
        return true;
      });
      assert.ok((await readFile(join(mnt, 'vol1.img'))).equals(before), 'previous image intact');
      assert.equal((await verifyImage(mnt, 'vol1')).ok, true);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
