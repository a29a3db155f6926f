// A thread of a restore to a file (restore.ts, restoreVersion): it reads a block from its source, checks it against the
// version's SHA-256 and writes it to the file, all with synchronous calls. On these small machines SHA-256 is most of
// a restore's CPU, and a thread per core that does the whole read-check-write of one block at a time keeps every core
// busy without the thread-pool round trips (four per block) and the main thread's hashing it replaced.
//
// Loaded with `new Worker` (restore-pool.ts); its only import at run time is Node's own, so it starts fast.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

export type BlockSource = 'image' | 'chunk' | 'zero';

export type WorkerRequest =
  | {
      type: 'open';
      /** The image, or null if there is none. */
      image: string | null;
      /** The file being restored (opened for writing: it exists, at its full size). */
      out: string;
      blockSize: number;
      /** The file is a clone of the image: a block is written only where it differs, zeros become holes. */
      clone: boolean;
    }
  | {
      type: 'block';
      index: number;
      offset: number;
      length: number;
      /** The version's SHA-256 of the block (unused for a zero block). */
      want: Uint8Array;
      /** Where to look, in order; ['zero'] for a zero block (only sent when `clone`). */
      order: BlockSource[];
      /** The chunk's path in the store. */
      chunk: string;
    }
  | { type: 'close' };

export type WorkerReply =
  | {
      type: 'done';
      index: number;
      source: BlockSource;
      /** Bytes written to the file. */
      wrote: number;
      /** Clone only: the block must become a hole (it is zeros in the version, not in the clone). */
      hole: boolean;
    }
  | { type: 'missing'; index: number }
  | { type: 'error'; index: number | null; error: SerializedError }
  | { type: 'closed' };

/** An Error with its errno fields, which a structured clone would drop (rethrowDiskFull needs `code`). */
export interface SerializedError {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

const PAGE = 4096;
const ZERO_PAGE = Buffer.alloc(PAGE);

interface Job {
  image: number | null;
  out: number;
  clone: boolean;
  buf: Buffer;
  there: Buffer;
}

let job: Job | undefined;

function readAt(fd: number, buf: Buffer, length: number, position: number): number {
  let off = 0;
  while (off < length) {
    const n = readSync(fd, buf, off, length - off, position + off);
    if (n === 0) break;
    off += n;
  }
  return off;
}

function writeAt(fd: number, data: Buffer, position: number): void {
  let off = 0;
  while (off < data.length) {
    const n = writeSync(fd, data, off, data.length - off, position + off);
    if (n <= 0) throw new Error('short write');
    off += n;
  }
}

function isZeroPage(data: Buffer, off: number, end: number): boolean {
  return data.subarray(off, end).equals(end - off === PAGE ? ZERO_PAGE : ZERO_PAGE.subarray(0, end - off));
}

/** As fsutil's writeSparse: the file is known to be zeros here, so zero pages stay holes. */
function writeSparse(fd: number, data: Buffer, position: number): number {
  let written = 0;
  let runStart = -1;
  for (let off = 0; off < data.length; off += PAGE) {
    const end = Math.min(off + PAGE, data.length);
    const zero = isZeroPage(data, off, end);
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      writeAt(fd, data.subarray(runStart, off), position + runStart);
      written += off - runStart;
      runStart = -1;
    }
  }
  if (runStart >= 0) {
    writeAt(fd, data.subarray(runStart), position + runStart);
    written += data.length - runStart;
  }
  return written;
}

function allZero(data: Buffer): boolean {
  for (let off = 0; off < data.length; off += PAGE)
    if (!isZeroPage(data, off, Math.min(off + PAGE, data.length))) return false;
  return true;
}

/** The block's bytes from one source, or undefined if that source does not have them whole. */
function readSource(j: Job, source: BlockSource, length: number, offset: number, chunk: string): Buffer | undefined {
  const data = j.buf.subarray(0, length);
  if (source === 'zero') return data.fill(0);
  if (source === 'image') {
    if (j.image === null) return undefined;
    // The image may end before the version's last block (it shrank since): the rest reads as zeros.
    data.fill(0, readAt(j.image, data, length, offset));
    return data;
  }
  let fd: number;
  try {
    fd = openSync(chunk, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return readAt(fd, data, length, 0) === length ? data : undefined;
  } finally {
    closeSync(fd);
  }
}

function restoreBlock(j: Job, req: Extract<WorkerRequest, { type: 'block' }>): WorkerReply {
  const want = Buffer.from(req.want.buffer, req.want.byteOffset, req.want.byteLength);
  for (const source of req.order) {
    const data = readSource(j, source, req.length, req.offset, req.chunk);
    if (!data) continue;
    if (source !== 'zero' && !createHash('sha256').update(data).digest().equals(want)) continue;
    if (!j.clone) {
      const wrote = source === 'zero' ? 0 : writeSparse(j.out, data, req.offset);
      return { type: 'done', index: req.index, source, wrote, hole: false };
    }
    // The clone holds the image's block: rewrite it only where the version differs.
    const there = j.there.subarray(0, req.length);
    there.fill(0, readAt(j.out, there, req.length, req.offset));
    if (there.equals(data)) return { type: 'done', index: req.index, source, wrote: 0, hole: false };
    if (source === 'zero' || allZero(data)) return { type: 'done', index: req.index, source, wrote: 0, hole: true };
    writeAt(j.out, data, req.offset);
    return { type: 'done', index: req.index, source, wrote: data.length, hole: false };
  }
  return { type: 'missing', index: req.index };
}

function serialize(err: unknown): SerializedError {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as NodeJS.ErrnoException;
  return { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path };
}

function closeJob(): void {
  const j = job;
  job = undefined;
  if (!j) return;
  try {
    closeSync(j.out);
  } finally {
    if (j.image !== null) closeSync(j.image);
  }
}

function handle(req: WorkerRequest): WorkerReply | undefined {
  switch (req.type) {
    case 'open': {
      closeJob();
      const out = openSync(req.out, 'r+');
      let image: number | null = null;
      try {
        image = req.image === null ? null : openSync(req.image, 'r');
      } catch (err) {
        // No image (removed meanwhile) only means no block can come from it.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          closeSync(out);
          throw err;
        }
      }
      job = {
        image,
        out,
        clone: req.clone,
        buf: Buffer.allocUnsafe(req.blockSize),
        there: Buffer.allocUnsafe(req.clone ? req.blockSize : 0),
      };
      return undefined;
    }
    case 'block':
      if (!job) throw new Error('restore worker: a block before open');
      return restoreBlock(job, req);
    case 'close':
      closeJob();
      return { type: 'closed' };
  }
}

parentPort?.on('message', (req: WorkerRequest) => {
  let reply: WorkerReply | undefined;
  try {
    reply = handle(req);
  } catch (err) {
    if (req.type === 'close') reply = { type: 'error', index: null, error: serialize(err) };
    else reply = { type: 'error', index: req.type === 'block' ? req.index : null, error: serialize(err) };
  }
  if (reply) parentPort?.postMessage(reply);
});
