// The reverse transfer end to end through a real SSH server and the python agent: a kept version written onto a
// "new volume" (a sparse file of zeros), byte-exact, only its data on the wire, resumable, and read back from the
// device so that a block the device did not keep is caught.
import assert from 'node:assert/strict';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import {
  VersionDamagedError,
  chunkPath,
  openVersionReader,
  restoreVersion,
  storePaths,
} from '../../activities/store/index.js';
import { checkVersionForRestore } from '../../activities/restore/check.js';
import {
  restoreVersionToDevice,
  type RestoreProgress,
  type RestoreToDeviceOptions,
} from '../../activities/restore/core.js';
import { DeviceTooSmallError, DeviceVerifyError } from '../../activities/restore/errors.js';
import { ConnectionLostError, TransferCancelledError } from '../../activities/transfer/errors.js';
import { contentDigest } from '../support/sparse.js';
import { dropletFixture, filesEqual, makeDevice, MiB } from '../transfer/helpers.js';
import { BLOCK, TestVolume, rng } from '../store/support.js';
import { FILTER, blankDevice, inputThrough, lossyAgent, sshOf } from './support.js';

const fx = dropletFixture('dosvob-restore-');

function options(v: TestVolume, versionId: string, device: string, extra: Partial<RestoreToDeviceOptions> = {}) {
  return {
    backupsDir: v.backups,
    storeKey: 'vol1',
    versionId,
    ssh: sshOf(fx.d),
    devicePath: device,
    stripes: 2,
    segmentBytes: 8 * BLOCK,
    ...extra,
  } satisfies RestoreToDeviceOptions;
}

/** The data blocks of a version, in order, and the one source each is read from first. */
async function dataBlocks(v: TestVolume, versionId: string) {
  const r = await openVersionReader(v.backups, 'vol1', versionId);
  try {
    const out: { index: number; source: string; hash: string }[] = [];
    for (let i = 0; i < r.manifest.header.blockCount; i++) {
      const source = r.source(i);
      if (source !== 'zero')
        out.push({ index: i, source, hash: r.manifest.hashes.subarray(i * 32, i * 32 + 32).toString('hex') });
    }
    return out;
  } finally {
    await r.close();
  }
}

void describe('restore onto a device', { concurrency: false }, () => {
  void test('the newest version, byte-exact; only data blocks travel; blocks are fsynced and read back', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 40 * BLOCK + 12345); // last block partial
    const r1 = await v.sync();
    const data = await dataBlocks(v, r1.versionId!);
    const device = await blankDevice(join(v.dir, 'target.img'), (await v.size()) + 3 * BLOCK); // a larger volume
    const beats: RestoreProgress[] = [];
    const r = await restoreVersionToDevice(options(v, r1.versionId!, device, { onProgress: (p) => beats.push(p) }));
    // The version's bytes, then the rest of the larger device still zeros.
    const restored = await readFile(device);
    const source = await readFile(v.device);
    assert.ok(restored.subarray(0, source.length).equals(source), 'the device holds the version byte-exact');
    assert.ok(restored.subarray(source.length).equals(Buffer.alloc(restored.length - source.length)));
    assert.equal(r.dataBlocks, data.length);
    assert.equal(r.blocksWritten, data.length);
    assert.equal(r.verifiedBlocks, data.length);
    assert.equal(r.rewrittenBlocks, 0);
    assert.equal(r.digest, r1.digest);
    assert.equal(r.resumed, false);
    // Only the data crosses: its bytes, plus per block a record head (42 B) and a hash for the read-back (32 B), plus
    // the agent's code once per session.
    assert.ok(r.dataBytes < (await v.size()) * 0.75, 'a third of the volume is zeros');
    const overhead = data.length * 128 + 6 * 40_000;
    assert.ok(r.bytesOnWire <= r.dataBytes + overhead, `${r.bytesOnWire} bytes on the wire for ${r.dataBytes} of data`);
    assert.ok(r.bytesOnWire >= r.dataBytes);
    assert.ok(beats.some((b) => b.phase === 'writing' && b.blocksDone > 0 && b.blocksDone < data.length));
    assert.ok(beats.some((b) => b.phase === 'verifying'));
    assert.equal(beats.at(-1)?.phase, 'done');
    assert.equal(beats.at(-1)?.resume.nextBlock, r.blockCount);
  });

  void test('an older version after later syncs: blocks from the chunk store, equal to restore-to-file', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 48 * BLOCK);
    const next = rng(7);
    const r1 = await v.sync();
    await v.mutate(next);
    await v.sync();
    await v.mutate(next);
    await v.sync();
    const data = await dataBlocks(v, r1.versionId!);
    const fromChunks = data.filter((b) => b.source === 'chunk').length;
    assert.ok(fromChunks > 0, 'the old version needs saved blocks');
    const check = await checkVersionForRestore(v.backups, 'vol1', r1.versionId!);
    assert.equal(check.dataBlocks, data.length);
    assert.equal(check.chunksChecked, new Set(data.filter((b) => b.source === 'chunk').map((b) => b.hash)).size);
    assert.equal(check.digest, r1.digest);
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    const r = await restoreVersionToDevice(options(v, r1.versionId!, device, { stripes: 3 }));
    assert.equal(r.stripes, 3);
    assert.equal(await contentDigest(device), v.states.get(r1.versionId!), 'the device holds that version');
    const file = join(v.dir, 'restore-to-file.img');
    await restoreVersion(v.backups, 'vol1', r1.versionId!, file);
    assert.ok(await filesEqual(device, file), 'byte-equal to restore-to-file');
  });

  void test('compressible blocks travel compressed off a LAN (here: asked for), incompressible ones raw', async () => {
    const dir = fx.dir();
    const v = await TestVolume.create(fx.d, dir, 16 * BLOCK);
    const text = Buffer.from('2026-11-26T00:00:00Z INFO GET /api/items/1234 200 ms=12\n'.repeat(2000)).subarray(
      0,
      BLOCK,
    );
    await makeDevice(v.device, 16 * BLOCK, BLOCK, (i) => (i < 6 ? text : i < 10 ? 'random' : 'zero'));
    const r1 = await v.sync();
    const device = await blankDevice(join(dir, 'target.img'), 16 * BLOCK);
    const r = await restoreVersionToDevice(options(v, r1.versionId!, device, { compression: 'auto' }));
    assert.ok(await filesEqual(device, v.device));
    assert.equal(r.compressedBlocks, 6);
    assert.ok(r.payloadBytes < 4 * BLOCK + 6 * (BLOCK / 4), `payload ${r.payloadBytes}`);
  });

  void test('a dropped connection: the next attempt resumes at the resume point, sends less, and verifies', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 96 * BLOCK);
    const r1 = await v.sync();
    const data = await dataBlocks(v, r1.versionId!);
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    let last: RestoreProgress | undefined;
    // A sync (and its 5-byte ack) after every block; the connection drops once the agent has acked about 20.
    fx.d.faults.dropAfterBytes = 100 + 20 * 5;
    await assert.rejects(
      restoreVersionToDevice(
        options(v, r1.versionId!, device, {
          stripes: 1,
          maxReconnects: 0,
          syncBytes: 1,
          onProgress: (p) => (last = p),
        }),
      ),
      (err) => {
        assert.ok(err instanceof ConnectionLostError, String(err));
        return true;
      },
    );
    fx.d.faults.dropAfterBytes = undefined;
    const resume = last?.resume;
    assert.ok(resume && resume.nextBlock > 0 && resume.nextBlock < r1.blockCount, JSON.stringify(resume));
    const durable = data.filter((b) => b.index < resume.nextBlock).length;
    const r = await restoreVersionToDevice(options(v, r1.versionId!, device, { resumeHint: resume }));
    assert.equal(r.resumed, true);
    assert.equal(r.resumedBlocks, durable);
    assert.equal(r.blocksWritten, data.length - durable, 'the blocks below the resume point are not sent again');
    assert.equal(r.verifiedBlocks, data.length);
    assert.ok(await filesEqual(device, v.device));
    // A resume point of another version is not used.
    const other = await restoreVersionToDevice(
      options(v, r1.versionId!, device, { resumeHint: { ...resume, digest: '00'.repeat(32) } }),
    );
    assert.equal(other.resumed, false);
    assert.equal(other.blocksWritten, data.length);
  });

  void test('a dropped connection within one attempt reconnects and finishes', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 64 * BLOCK);
    const r1 = await v.sync();
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    fx.d.faults.dropAfterBytes = 100 + 10 * 5;
    try {
      const r = await restoreVersionToDevice(options(v, r1.versionId!, device, { stripes: 1, syncBytes: 1 }));
      assert.equal(r.reconnects, 1);
      assert.ok(await filesEqual(device, v.device));
    } finally {
      fx.d.faults.dropAfterBytes = undefined;
    }
  });

  void test('a corrupt chunk: the check before anything is created fails naming the block and the chunk', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 32 * BLOCK);
    const r1 = await v.sync();
    await v.mutate(rng(3));
    await v.sync();
    const saved = (await dataBlocks(v, r1.versionId!)).find((b) => b.source === 'chunk')!;
    const file = chunkPath(v.backups, saved.hash);
    const bytes = await readFile(file);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(file, bytes);
    await assert.rejects(checkVersionForRestore(v.backups, 'vol1', r1.versionId!), (err) => {
      assert.ok(err instanceof VersionDamagedError, String(err));
      assert.match(err.message, new RegExp(`block(s)? ${saved.index}\\b`));
      assert.ok(err.message.includes(saved.hash), err.message);
      return true;
    });
  });

  void test('a corrupt image block fails the restore, naming the block; nothing past it is claimed durable', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 32 * BLOCK);
    const r1 = await v.sync();
    const victim = (await dataBlocks(v, r1.versionId!))[5]!;
    const image = storePaths(v.backups, 'vol1').image;
    const fh = await open(image, 'r+');
    await fh.write(Buffer.from('damaged'), 0, 7, victim.index * BLOCK + 10);
    await fh.close();
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    let last: RestoreProgress | undefined;
    await assert.rejects(
      restoreVersionToDevice(options(v, r1.versionId!, device, { stripes: 1, onProgress: (p) => (last = p) })),
      (err) => {
        assert.ok(err instanceof VersionDamagedError, String(err));
        assert.match(err.message, new RegExp(`block ${victim.index} `));
        return true;
      },
    );
    assert.ok((last?.resume.nextBlock ?? 0) <= victim.index);
  });

  void test('an image block changed under a sync, its old content saved: sent again checked, from the chunk', async () => {
    // Blocks are read unchecked (the agent checks them): a sync that has saved a block's old content to the chunk store
    // and is rewriting the image leaves the image's copy wrong for this version. The agent refuses it; read checked,
    // the chunk has it, and the stripe starts over from its last sync with every block checked.
    const v = await TestVolume.create(fx.d, fx.dir(), 32 * BLOCK);
    const r1 = await v.sync();
    const victim = (await dataBlocks(v, r1.versionId!))[5]!;
    const image = storePaths(v.backups, 'vol1').image;
    const fh = await open(image, 'r+');
    const old = Buffer.alloc(BLOCK);
    await fh.read(old, 0, BLOCK, victim.index * BLOCK);
    const chunk = chunkPath(v.backups, victim.hash);
    await mkdir(dirname(chunk), { recursive: true });
    await writeFile(chunk, old);
    await fh.write(Buffer.from('changed'), 0, 7, victim.index * BLOCK + 10);
    await fh.close();
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    const logs: string[] = [];
    const r = await restoreVersionToDevice(options(v, r1.versionId!, device, { stripes: 1, log: (m) => logs.push(m) }));
    assert.ok(
      logs.some((m) => m.includes(`refused block ${victim.index} `)),
      logs.join('\n'),
    );
    assert.equal(r.verifiedBlocks, r.dataBlocks);
    assert.equal(await contentDigest(device), v.states.get(r1.versionId!), 'the device holds that version');
  });

  void test('a device smaller than the version is refused before a block is written', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 16 * BLOCK);
    const r1 = await v.sync();
    const device = await blankDevice(join(v.dir, 'target.img'), 16 * BLOCK - 4096);
    await assert.rejects(restoreVersionToDevice(options(v, r1.versionId!, device)), (err) => {
      assert.ok(err instanceof DeviceTooSmallError, String(err));
      assert.equal(err.retryable, false);
      assert.match(err.message, new RegExp(`has ${16 * BLOCK - 4096} bytes, the version needs ${16 * BLOCK}`));
      return true;
    });
    assert.equal((await stat(device)).blocks, 0, 'nothing written');
  });

  void test('the read-back catches a block the device did not keep: written once more, then verified', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 24 * BLOCK);
    const r1 = await v.sync();
    const victim = (await dataBlocks(v, r1.versionId!))[3]!.index;
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    const counter = join(v.dir, 'lost-writes');
    const r = await restoreVersionToDevice(
      options(v, r1.versionId!, device, { agent: lossyAgent(victim, BLOCK, counter, 1) }),
    );
    assert.equal(await readFile(counter, 'utf8'), '1', 'the device lost the first write of the block');
    assert.equal(r.rewrittenBlocks, 1);
    assert.ok(await filesEqual(device, v.device));
  });

  void test('a block the device never keeps fails the restore for good, naming it', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 24 * BLOCK);
    const r1 = await v.sync();
    const victim = (await dataBlocks(v, r1.versionId!))[4]!.index;
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    const counter = join(v.dir, 'lost-writes');
    await assert.rejects(
      restoreVersionToDevice(options(v, r1.versionId!, device, { agent: lossyAgent(victim, BLOCK, counter, -1) })),
      (err) => {
        assert.ok(err instanceof DeviceVerifyError, String(err));
        assert.equal(err.retryable, false);
        assert.deepEqual(err.blocks, [victim]);
        assert.match(err.message, new RegExp(`block\\(s\\) ${victim} did not read back as written, twice`));
        return true;
      },
    );
    assert.equal(await readFile(counter, 'utf8'), '2', 'written twice, lost twice');
  });

  void test('cancellation mid-write stops at once, judged by the blocks sent after it', async () => {
    const v = await TestVolume.create(fx.d, fx.dir(), 2 * MiB, {}, 'device.img');
    const r1 = await v.sync();
    const total = (await dataBlocks(v, r1.versionId!)).length;
    const device = await blankDevice(join(v.dir, 'target.img'), await v.size());
    const ac = new AbortController();
    let atCancel = -1;
    let after = 0;
    // The droplet takes 256 KiB/s, so the restore is mid-way for seconds whatever this machine's speed.
    inputThrough(fx.d, `python3 ${FILTER} --rate ${256 * 1024}`);
    try {
      await assert.rejects(
        restoreVersionToDevice(
          options(v, r1.versionId!, device, {
            stripes: 1,
            syncBytes: 1, // at most a few blocks ahead of the agent: progress moves at the droplet's pace
            signal: ac.signal,
            onProgress: (p) => {
              if (atCancel >= 0) after = Math.max(after, p.blocksDone);
              else if (p.blocksDone >= 2) {
                atCancel = p.blocksDone;
                ac.abort(new Error('test cancel'));
              }
            },
          }),
        ),
        (err) => {
          assert.ok(err instanceof TransferCancelledError, String(err));
          return true;
        },
      );
    } finally {
      fx.d.faults.wrap = undefined;
    }
    assert.ok(atCancel >= 2 && after <= atCancel, `cancelled at ${atCancel} of ${total}, ${after} after`);
    assert.ok(atCancel < total);
  });
});
