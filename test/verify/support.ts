// Real filesystem images for the check tests: made with mkfs.ext4 / mkfs.xfs on sparse files and filled with debugfs
// (no mounting, no privileges), torn by the simulator's own fault, and laid out in hand-written partition tables.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { defaultSearchPath, findBinary } from '../../activities/verify/checkers';
import { DiskStore } from '../simulator/disk';

const run = promisify(execFile);
export const MiB = 1 << 20;

/** Why a test needing these tools cannot run here, or undefined when it can (synchronous: for `skip`). */
export function missingTools(...names: string[]): string | undefined {
  const found = (n: string) =>
    defaultSearchPath().some((dir) => {
      try {
        accessSync(join(dir, n), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  const missing = names.filter((n) => !found(n));
  return missing.length > 0 ? `not installed here: ${missing.join(', ')}` : undefined;
}

async function tool(name: string): Promise<string> {
  const path = await findBinary(name, defaultSearchPath());
  if (!path) throw new Error(`${name} is not installed`);
  return path;
}

/** A sparse file of `sizeBytes` with a fresh ext4 filesystem on it, holding `files` (name -> content). */
export async function makeExt4(file: string, sizeBytes: number, files: Record<string, string> = {}): Promise<void> {
  await writeFile(file, '');
  await truncate(file, sizeBytes);
  await formatExt4(file);
  await writeExt4Files(file, files);
}

/** A fresh ext4 filesystem over the whole of an existing file (a simulator volume's), written in place. */
export async function formatExt4(file: string): Promise<void> {
  await run(await tool('mkfs.ext4'), ['-F', '-q', file]);
}

/** Write files into an ext4 image with debugfs (the way a running server would, but without a mount). */
export async function writeExt4Files(file: string, files: Record<string, string>): Promise<void> {
  const debugfs = await tool('debugfs');
  for (const [name, content] of Object.entries(files)) {
    const src = `${file}.src-${name}`;
    await writeFile(src, content);
    await run(debugfs, ['-w', '-R', `write ${src} ${name}`, file]);
    await run('rm', ['-f', src]);
  }
}

/** Set (or with `-name`, clear) an ext4 feature flag with debugfs, e.g. `needs_recovery`. */
export async function setExt4Feature(file: string, feature: string): Promise<void> {
  await run(await tool('debugfs'), ['-w', '-R', `feature ${feature}`, file]);
}

export async function makeXfs(file: string, sizeBytes: number): Promise<void> {
  await writeFile(file, '');
  await truncate(file, sizeBytes);
  await run(await tool('mkfs.xfs'), ['-q', '-f', file]);
}

/**
 * Tear an ext4 image the way the simulator tears a snapshot taken while writes are in flight (tornSnapshots): through
 * the simulator's own DiskStore, with the file standing in for a snapshot's.
 */
export async function tearExt4(file: string, scratch: string): Promise<boolean> {
  const disk = new DiskStore(scratch);
  await mkdir(join(scratch, 'snapshots'), { recursive: true });
  const id = `torn-${createHash('sha256').update(file).digest('hex').slice(0, 8)}`;
  await rename(file, disk.snapshotPath(id));
  try {
    return await disk.tearExt4Snapshot(id);
  } finally {
    await rename(disk.snapshotPath(id), file);
  }
}

/** Size, mtime and content hash: equal before and after means the file was not written. */
export async function fileState(file: string): Promise<string> {
  const st = await stat(file);
  const hash = createHash('sha256');
  // Streamed: a simulator volume is a 1 GiB (sparse) file.
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return `${st.size} ${st.mtimeMs} ${hash.digest('hex')}`;
}

/** Copy `from` (a partition's filesystem) into `to` at `offset`, without growing zeros into data. */
export async function placeAt(from: string, to: string, offset: number): Promise<void> {
  const data = await readFile(from);
  const fh = await open(to, 'r+');
  try {
    const page = 64 * 1024;
    const zero = Buffer.alloc(page);
    for (let off = 0; off < data.length; off += page) {
      const chunk = data.subarray(off, Math.min(off + page, data.length));
      if (!chunk.equals(zero.subarray(0, chunk.length))) await fh.write(chunk, 0, chunk.length, offset + off);
    }
  } finally {
    await fh.close();
  }
}

export interface TablePartition {
  startLba: number;
  sectors: number;
  /** MBR type byte (0x83 Linux, 0x05 extended…). */
  type?: number;
  name?: string;
}

/** Write an MBR partition table (512-byte sectors) into the first sector of `file`. */
export async function writeMbr(file: string, parts: readonly TablePartition[]): Promise<void> {
  const mbr = Buffer.alloc(512);
  parts.forEach((p, i) => {
    const e = 446 + i * 16;
    mbr[e + 4] = p.type ?? 0x83;
    mbr.writeUInt32LE(p.startLba, e + 8);
    mbr.writeUInt32LE(p.sectors, e + 12);
  });
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fh = await open(file, 'r+');
  try {
    await fh.write(mbr, 0, 512, 0);
  } finally {
    await fh.close();
  }
}

/** A protective MBR and a GPT (header at LBA 1, 128 entries at LBA 2); CRCs are left zero (dosvob does not read them). */
export async function writeGpt(file: string, parts: readonly TablePartition[]): Promise<void> {
  await writeMbr(file, [{ startLba: 1, sectors: 0xffffffff, type: 0xee }]);
  const header = Buffer.alloc(92);
  header.write('EFI PART', 0, 'latin1');
  header.writeBigUInt64LE(2n, 72);
  header.writeUInt32LE(128, 80);
  header.writeUInt32LE(128, 84);
  const entries = Buffer.alloc(128 * 128);
  // Linux filesystem data: 0FC63DAF-8483-4772-8E79-3D69D8477DE4, in GPT's mixed-endian bytes.
  const linux = Buffer.from('af3dc60f838472478e793d69d8477de4', 'hex');
  parts.forEach((p, i) => {
    const e = entries.subarray(i * 128, (i + 1) * 128);
    linux.copy(e, 0);
    e.fill(i + 1, 16, 32);
    e.writeBigUInt64LE(BigInt(p.startLba), 32);
    e.writeBigUInt64LE(BigInt(p.startLba + p.sectors - 1), 40);
    if (p.name) e.write(p.name, 56, 'utf16le');
  });
  const fh = await open(file, 'r+');
  try {
    await fh.write(header, 0, header.length, 512);
    await fh.write(entries, 0, entries.length, 1024);
  } finally {
    await fh.close();
  }
}
