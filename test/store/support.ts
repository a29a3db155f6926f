// Shared fixtures of the kept-versions tests: a "volume" (a device file) changed at random between real syncs through
// the transfer's SSH droplet, with the content digest of every state it was synced in.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SyncVolumeOptions, SyncVolumeResult } from '../../activities/transfer/core.js';
import { listVersions, restoreVersion, verifyChunks } from '../../activities/store/index.js';
import { contentDigest } from '../support/sparse.js';
import { makeDevice, sync, type Droplet } from '../transfer/helpers.js';

export const KiB = 1024;
export const BLOCK = 64 * KiB;

/** Deterministic choices (mulberry32), so that a failure reproduces; the bytes themselves may be random. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class TestVolume {
  /** Content digest of the device at each version made from it. */
  readonly states = new Map<string, string>();
  syncs = 0;

  constructor(
    readonly d: Droplet,
    readonly dir: string,
    readonly device: string,
    readonly backups: string,
    readonly base: Partial<SyncVolumeOptions>,
  ) {}

  static async create(
    d: Droplet,
    dir: string,
    sizeBytes: number,
    base: Partial<SyncVolumeOptions> = {},
    name = 'device.img',
  ): Promise<TestVolume> {
    await mkdir(dir, { recursive: true });
    const device = join(dir, name);
    await makeDevice(device, sizeBytes, BLOCK, (i) => (i % 3 === 2 ? 'zero' : 'random'));
    return new TestVolume(d, dir, device, join(dir, 'backups'), {
      blockSize: BLOCK,
      segmentBytes: 16 * BLOCK,
      ...base,
    });
  }

  options(extra: Partial<SyncVolumeOptions> = {}): Partial<SyncVolumeOptions> {
    return { ...this.base, snapshotId: `snap-${this.syncs + 1}`, ...extra };
  }

  /** A real sync; remembers the device's content under the version it made. */
  async sync(extra: Partial<SyncVolumeOptions> = {}): Promise<SyncVolumeResult> {
    const r = await sync(this.d, this.backups, this.device, this.options(extra));
    this.syncs++;
    assert.ok(r.versionId, 'the sync made a version');
    this.states.set(r.versionId, await contentDigest(this.device));
    return r;
  }

  /** Remember the device's content for a version made some other way (a killed child, recovered later). */
  async remember(versionId: string): Promise<void> {
    this.states.set(versionId, await contentDigest(this.device));
  }

  async size(): Promise<number> {
    return (await stat(this.device)).size;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    const fh = await open(this.device, 'r+');
    try {
      await fh.write(data, 0, data.length, offset);
    } finally {
      await fh.close();
    }
  }

  async resize(sizeBytes: number): Promise<void> {
    const fh = await open(this.device, 'r+');
    try {
      await fh.truncate(sizeBytes);
    } finally {
      await fh.close();
    }
  }

  /**
   * Random changes: whole blocks rewritten, small writes inside blocks, a block zeroed, a block made a copy of
   * another (identical content), and `recurring` written somewhere (content an earlier version already had).
   */
  async mutate(next: () => number, recurring?: Buffer): Promise<void> {
    const size = await this.size();
    const blocks = Math.ceil(size / BLOCK);
    const pick = () => Math.floor(next() * blocks);
    const whole = 1 + Math.floor(next() * 4);
    for (let k = 0; k < whole; k++) {
      const i = pick();
      await this.write(i * BLOCK, randomBytes(Math.min(BLOCK, size - i * BLOCK)));
    }
    for (let k = 0; k < 3; k++) {
      const len = 1 + Math.floor(next() * 5000);
      const off = Math.floor(next() * (size - len));
      await this.write(off, randomBytes(len));
    }
    const z = pick();
    await this.write(z * BLOCK, Buffer.alloc(Math.min(BLOCK, size - z * BLOCK)));
    const from = pick();
    const to = pick();
    if (from !== to && (from + 1) * BLOCK <= size && (to + 1) * BLOCK <= size) {
      const fh = await open(this.device, 'r+');
      try {
        const buf = Buffer.alloc(BLOCK);
        await fh.read(buf, 0, BLOCK, from * BLOCK);
        await fh.write(buf, 0, BLOCK, to * BLOCK);
      } finally {
        await fh.close();
      }
    }
    if (recurring && recurring.length <= size) await this.write(0, recurring);
  }

  /** Every remembered version restores to exactly the content the device had then; returns how many did. */
  async assertAllRestore(key = 'vol1'): Promise<number> {
    const listed = await listVersions(this.backups, key);
    let n = 0;
    for (const [versionId, digest] of this.states) {
      assert.ok(
        listed.some((v) => v.versionId === versionId),
        `version ${versionId} is listed (${listed.map((v) => v.versionId).join(', ')})`,
      );
      const out = join(this.dir, `restore-${versionId}.img`);
      await restoreVersion(this.backups, key, versionId, out);
      assert.equal(await contentDigest(out), digest, `version ${versionId} restores byte-exact`);
      n++;
    }
    return n;
  }
}

/** Every chunk matches its name and every version of every store has every chunk it needs. */
export async function assertChunksSound(backups: string): Promise<void> {
  const v = await verifyChunks(backups);
  assert.deepEqual(v.bad, [], 'no damaged chunk');
  assert.deepEqual(v.brokenVersions, [], 'no version misses a chunk');
}
