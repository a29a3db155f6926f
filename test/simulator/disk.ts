// Volumes and snapshots as real sparse files.
// - A new volume is a sparse file of its full size (ftruncate).
// - A snapshot is a sparse copy (`cp --reflink=auto --sparse=always`: reflink where the filesystem can,
//   else only the data extents, found with SEEK_DATA/SEEK_HOLE by coreutils >= 9), or a hardlink when the
//   volume's file is itself still shared with a snapshot (never written since it was made from one).
// - A volume made from a snapshot is a hardlink to the snapshot's file; the first write through
//   `write()` copies it (sparse) and renames the copy over the volume's path: copy-on-write.
// Invariant: a file with more than one link is never written in place.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** ext4 with 4 KiB blocks caps a file at 16 TiB - 4 KiB. */
const MAX_FILE_BYTES = 16 * 1024 ** 4 - 4096;

export async function sparseCopy(from: string, to: string): Promise<void> {
  await execFileAsync('cp', ['--reflink=auto', '--sparse=always', from, to]);
}

export class DiskStore {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(readonly root: string) {}

  async init(): Promise<void> {
    for (const sub of ['volumes', 'snapshots']) {
      const dir = path.join(this.root, sub);
      await fs.mkdir(dir, { recursive: true });
      // A reused --data dir: forget files of an earlier run (state is not persisted).
      for (const name of await fs.readdir(dir)) if (/\.img(\.tmp)?$/.test(name)) await fs.rm(path.join(dir, name));
    }
  }

  volumePath(id: string): string {
    return path.join(this.root, 'volumes', `${id}.img`);
  }

  snapshotPath(id: string): string {
    return path.join(this.root, 'snapshots', `${id}.img`);
  }

  /** Run `fn` alone for this key (writes and snapshots of one volume never interleave). */
  private withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return run;
  }

  async createEmpty(volumeId: string, bytes: number): Promise<void> {
    const handle = await fs.open(this.volumePath(volumeId), 'wx');
    try {
      await handle.truncate(Math.min(bytes, MAX_FILE_BYTES));
    } finally {
      await handle.close();
    }
  }

  async createFromSnapshot(volumeId: string, snapshotId: string): Promise<void> {
    await fs.link(this.snapshotPath(snapshotId), this.volumePath(volumeId));
  }

  async snapshotVolume(volumeId: string, snapshotId: string): Promise<void> {
    await this.withLock(volumeId, async () => {
      const src = this.volumePath(volumeId);
      const st = await fs.stat(src);
      if (st.nlink > 1) await fs.link(src, this.snapshotPath(snapshotId));
      else await sparseCopy(src, this.snapshotPath(snapshotId));
    });
  }

  /**
   * Tear the snapshot's ext4 metadata as a write caught half-way would: group descriptor 0's free-blocks count changes
   * and its checksum does not (without checksums, the count no longer matches the bitmap). The snapshot's own bytes
   * only: a file it shares with its volume is copied first. False if it holds no ext2/3/4 filesystem at offset 0.
   */
  async tearExt4Snapshot(snapshotId: string): Promise<boolean> {
    const file = this.snapshotPath(snapshotId);
    if ((await fs.stat(file)).nlink > 1) {
      await sparseCopy(file, `${file}.tmp`);
      await fs.rename(`${file}.tmp`, file);
    }
    const handle = await fs.open(file, 'r+');
    try {
      const sb = Buffer.alloc(1024);
      await handle.read(sb, 0, 1024, 1024);
      if (sb.readUInt16LE(0x38) !== 0xef53) return false;
      const blockSize = 1024 << sb.readUInt32LE(0x18);
      // The descriptor table is the block after the superblock's: s_first_data_block + 1.
      const descriptors = (sb.readUInt32LE(0x14) + 1) * blockSize;
      const field = Buffer.alloc(2);
      await handle.read(field, 0, 2, descriptors + 0x0c);
      field.writeUInt16LE((field.readUInt16LE(0) + 0xffff - 6) & 0xffff);
      await handle.write(field, 0, 2, descriptors + 0x0c);
      return true;
    } finally {
      await handle.close();
    }
  }

  /** Whether the volume's file is shared with a snapshot (and so must not be written in place). */
  async isShared(volumeId: string): Promise<boolean> {
    return (await fs.stat(this.volumePath(volumeId))).nlink > 1;
  }

  async write(volumeId: string, offset: number, data: Buffer): Promise<void> {
    await this.withLock(volumeId, async () => {
      const file = this.volumePath(volumeId);
      const st = await fs.stat(file);
      if (offset < 0 || offset + data.length > st.size) {
        throw new RangeError(`write of ${data.length} bytes at ${offset} is outside the volume (${st.size} bytes)`);
      }
      if (st.nlink > 1) {
        const tmp = `${file}.tmp`;
        await sparseCopy(file, tmp);
        await fs.rename(tmp, file);
      }
      const handle = await fs.open(file, 'r+');
      try {
        await handle.write(data, 0, data.length, offset);
      } finally {
        await handle.close();
      }
    });
  }

  async read(file: string, offset: number, length: number): Promise<Buffer> {
    const handle = await fs.open(file, 'r');
    try {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  /** Bytes actually stored (allocated blocks). */
  async allocatedBytes(file: string): Promise<number> {
    return (await fs.stat(file)).blocks * 512;
  }

  async deleteVolume(volumeId: string): Promise<void> {
    await this.withLock(volumeId, () => fs.rm(this.volumePath(volumeId), { force: true }));
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    await fs.rm(this.snapshotPath(snapshotId), { force: true });
  }
}
