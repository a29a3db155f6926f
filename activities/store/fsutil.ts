// Small durable-write helpers.
import { spawn } from 'node:child_process';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isErrno } from './errors.js';

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write a file so that a crash leaves either the old or the new content: tmp file, fsync, rename, fsync dir. */
export async function writeFileAtomic(path: string, data: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}

export async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    const fh = await open(path, 'r');
    await fh.close();
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/** Write all of buf at position (FileHandle.write may write less than asked). */
export async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    if (bytesWritten <= 0) throw new Error('short write');
    off += bytesWritten;
  }
}

/** Read exactly len bytes at position (fewer only at end of file). */
export async function readFully(fh: FileHandle, len: number, position: number, into?: Buffer): Promise<Buffer> {
  const buf = into && into.length >= len ? into.subarray(0, len) : Buffer.allocUnsafe(len);
  let off = 0;
  while (off < len) {
    const { bytesRead } = await fh.read(buf, off, len - off, position + off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return buf.subarray(0, off);
}

const PAGE = 4096;

/**
 * Write a block into a file that is known to be sparse (all zeros) at its place: only runs of non-zero 4 KiB pages
 * are written, so zero pages stay holes. Returns the bytes actually written.
 */
export async function writeSparse(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let written = 0;
  let runStart = -1;
  const zeroPage = ZERO_PAGE;
  for (let off = 0; off < buf.length; off += PAGE) {
    const end = Math.min(off + PAGE, buf.length);
    const isZero = buf.subarray(off, end).equals(end - off === PAGE ? zeroPage : zeroPage.subarray(0, end - off));
    if (!isZero && runStart < 0) runStart = off;
    if (isZero && runStart >= 0) {
      await writeFully(fh, buf.subarray(runStart, off), position + runStart);
      written += off - runStart;
      runStart = -1;
    }
  }
  if (runStart >= 0) {
    await writeFully(fh, buf.subarray(runStart), position + runStart);
    written += buf.length - runStart;
  }
  return written;
}
const ZERO_PAGE = Buffer.alloc(PAGE);

export interface HoleRange {
  offset: number;
  length: number;
}

let fallocateWorks: boolean | undefined;

/**
 * Deallocate byte ranges of a file (they read as zeros afterwards, the file size is kept). Node has no fallocate(2),
 * so this runs util-linux `fallocate --punch-hole` for each coalesced range, batched into one `sh` per 256 ranges.
 * Where that is unavailable or the filesystem refuses, it writes zeros instead (correct, just not sparse) and reports
 * so. Returns the number of ranges that had to be zero-filled.
 */
export async function punchHoles(path: string, fh: FileHandle, ranges: HoleRange[]): Promise<number> {
  const merged = coalesce(ranges);
  if (merged.length === 0) return 0;
  let failed: HoleRange[] = merged;
  if (fallocateWorks !== false) {
    failed = [];
    for (let i = 0; i < merged.length; i += 256) {
      const batch = merged.slice(i, i + 256);
      const ok = await runPunchBatch(path, batch);
      if (!ok) failed.push(...batch);
    }
    if (failed.length === merged.length) fallocateWorks = false;
  }
  if (failed.length > 0) {
    const zeros = Buffer.alloc(1 << 20);
    for (const r of failed) {
      for (let off = 0; off < r.length; off += zeros.length) {
        await writeFully(fh, zeros.subarray(0, Math.min(zeros.length, r.length - off)), r.offset + off);
      }
    }
  }
  return failed.length;
}

function coalesce(ranges: HoleRange[]): HoleRange[] {
  const sorted = [...ranges].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: HoleRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ ...r });
  }
  return out;
}

function runPunchBatch(path: string, batch: HoleRange[]): Promise<boolean> {
  // The path goes in as $1, never into the script text.
  const script = batch
    .map((r) => `fallocate --punch-hole --offset ${r.offset} --length ${r.length} -- "$1" || exit 1`)
    .join('\n');
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', script, 'punch', path], { stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}

/**
 * Writes a file back to disk while it is still being written (a datasync each `everyBytes`, one at a time), so that
 * the fsync that makes it durable has only the tail left instead of every byte at once. Durability still rests on that
 * final fsync alone; an error here is kept and thrown by `settle()`, since it means the file cannot be trusted.
 */
export class BackgroundFlush {
  private unflushed = 0;
  private flushing: Promise<void> | undefined;
  private error: unknown;

  constructor(
    private readonly fh: FileHandle,
    private readonly everyBytes: number,
  ) {}

  wrote(bytes: number): void {
    this.unflushed += bytes;
    if (this.flushing || this.unflushed < this.everyBytes) return;
    this.unflushed = 0;
    this.flushing = this.fh
      .datasync()
      .catch((err: unknown) => {
        this.error = err;
      })
      .finally(() => {
        this.flushing = undefined;
      });
  }

  /** Wait for the flush in flight and throw what it hit; what follows (a full fsync) covers everything written. */
  async settle(): Promise<void> {
    await this.flushing;
    this.unflushed = 0;
    if (this.error !== undefined) {
      const err = this.error;
      this.error = undefined;
      throw err;
    }
  }

  /** Wait for the flush in flight without judging it: the descriptor must never be closed under a datasync. */
  async drained(): Promise<void> {
    await this.flushing;
  }
}
