// The staging area of one in-flight transfer: a plan (which blocks each stripe covers, against which base manifest)
// and one append-only log per stripe. The logs are the redo log of the apply step and the resume point of a retried
// transfer.
//
// Stripe log, big-endian:
//   header: "DOSVOBSL" u32 version u32 jsonLen JSON{stagingId, stripe} u32 crc32(all before)
//   records, each protected by a CRC-32 of its fixed-size part:
//     'U' u64 first u32 count crc          blocks first..first+count-1 are unchanged
//     'Z' u64 first u32 count crc          ... are all zeros now
//     'D' u64 index u32 len sha256[32] crc  block index has new content; in 'inline' mode len bytes of it follow
//                                          ('direct' mode, first sync: the bytes went straight into incoming.img)
//     'C' u64 next crc                     checkpoint: everything before is durable (fsynced); resume at block `next`
// On resume a log is cut back to its last checkpoint: anything after it may not have reached the disk.
import { randomBytes } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { STORE_FORMAT_VERSION } from './layout.js';
import { HASH_LEN } from './manifest.js';
import { BackgroundFlush, readFully, writeFileAtomic, writeFully } from './fsutil.js';
import { StoreFormatError } from './errors.js';

export type StagingMode = 'inline' | 'direct';
export type BlockRange = [start: number, end: number];

export interface StagingPlan {
  formatVersion: number;
  stagingId: string;
  volumeId: string;
  volumeName: string;
  snapshotId: string;
  snapshotCreatedAt: string | null;
  /** Size of the volume being transferred (the device's size). */
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  /** Digest of the manifest this transfer is relative to; null for a first sync. */
  baseDigest: string | null;
  mode: StagingMode;
  stripes: { ranges: BlockRange[] }[];
  createdAt: string;
}

export interface CommitRecord {
  formatVersion: number;
  stagingId: string;
  mode: StagingMode;
  sizeBytes: number;
  blockSize: number;
  stripes: number;
  /** False when the logs hold no data or zeroed blocks and the size is unchanged: the image needs no change. */
  touchesImage: boolean;
  /** Digest of manifest.next, the manifest that becomes current once applied. */
  digest: string;
  /** Format 2: the version manifest.next becomes (kept as versions/<versionId>). */
  versionId?: string;
}

export function newStagingId(): string {
  return randomBytes(12).toString('hex');
}

/** Split blocks [0, blockCount) over `stripes` stripes, interleaving segments of `segmentBlocks` blocks. */
export function planStripes(blockCount: number, stripes: number, segmentBlocks: number): { ranges: BlockRange[] }[] {
  const out: { ranges: BlockRange[] }[] = Array.from({ length: Math.max(1, stripes) }, () => ({ ranges: [] }));
  const seg = Math.max(1, segmentBlocks);
  let k = 0;
  for (let s = 0; s < blockCount; s += seg) {
    out[k % out.length]!.ranges.push([s, Math.min(blockCount, s + seg)]);
    k++;
  }
  return out.filter((s, i) => i === 0 || s.ranges.length > 0);
}

/** The ranges still to do once every block before `next` (in stripe order) is done. */
export function remainingRanges(ranges: BlockRange[], next: number): BlockRange[] {
  const out: BlockRange[] = [];
  for (const [s, e] of ranges) {
    if (e <= next) continue;
    out.push([Math.max(s, next), e]);
  }
  return out;
}

export function firstBlock(ranges: BlockRange[]): number {
  return ranges[0]?.[0] ?? 0;
}

export function countBlocks(ranges: BlockRange[]): number {
  return ranges.reduce((n, [s, e]) => n + (e - s), 0);
}

export async function writePlan(path: string, plan: StagingPlan): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(plan));
}

export async function readJsonVersioned<T extends { formatVersion: number }>(path: string, what: string): Promise<T> {
  const parsed = JSON.parse(await readFile(path, 'utf8')) as T;
  if (parsed.formatVersion !== STORE_FORMAT_VERSION) {
    throw new StoreFormatError(
      `${what} ${path} was written by store format version ${parsed.formatVersion}; this dosvob uses version ${STORE_FORMAT_VERSION}`,
      parsed.formatVersion,
    );
  }
  return parsed;
}

const LOG_MAGIC = Buffer.from('DOSVOBSL', 'latin1');
export const RUN_RECORD_LEN = 1 + 8 + 4 + 4;
export const DATA_RECORD_LEN = 1 + 8 + 4 + HASH_LEN + 4;
export const CHECKPOINT_RECORD_LEN = 1 + 8 + 4;

function logHeader(stagingId: string, stripe: number, formatVersion = STORE_FORMAT_VERSION): Buffer {
  const json = Buffer.from(JSON.stringify({ stagingId, stripe }), 'utf8');
  const head = Buffer.alloc(16);
  LOG_MAGIC.copy(head, 0);
  head.writeUInt32BE(formatVersion, 8);
  head.writeUInt32BE(json.length, 12);
  const body = Buffer.concat([head, json]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([body, crc]);
}

function withCrc(rec: Buffer): Buffer {
  rec.writeUInt32BE(crc32(rec.subarray(0, rec.length - 4)), rec.length - 4);
  return rec;
}

export type LogRecord =
  | { type: 'U' | 'Z'; first: number; count: number }
  | { type: 'D'; index: number; length: number; hash: Buffer; dataOffset: number }
  | { type: 'C'; next: number };

/**
 * Start writing a log's data back to disk once this much has been appended since the last flush. The commit has to
 * make the whole log durable before it touches the image; flushing in the background while the stream is still
 * arriving leaves that final fsync only the tail, instead of every byte of the transfer at once.
 */
const BACKGROUND_FLUSH_BYTES = 8 << 20;

/** Appends records to one stripe's log. */
export class StripeLogWriter {
  private readonly flush: BackgroundFlush;

  private constructor(
    private readonly fh: FileHandle,
    private position: number,
    readonly mode: StagingMode,
  ) {
    this.flush = new BackgroundFlush(fh, BACKGROUND_FLUSH_BYTES);
  }

  static async create(path: string, stagingId: string, stripe: number, mode: StagingMode): Promise<StripeLogWriter> {
    const fh = await open(path, 'w');
    const head = logHeader(stagingId, stripe);
    await writeFully(fh, head, 0);
    return new StripeLogWriter(fh, head.length, mode);
  }

  /** Reopen an existing log, cut back to `validLength` (its last checkpoint). */
  static async resume(path: string, validLength: number, mode: StagingMode): Promise<StripeLogWriter> {
    const fh = await open(path, 'r+');
    await fh.truncate(validLength);
    return new StripeLogWriter(fh, validLength, mode);
  }

  get length(): number {
    return this.position;
  }

  async run(type: 'U' | 'Z', first: number, count: number): Promise<void> {
    const rec = Buffer.alloc(RUN_RECORD_LEN);
    rec.write(type, 0, 'latin1');
    rec.writeBigUInt64BE(BigInt(first), 1);
    rec.writeUInt32BE(count, 9);
    await this.append([withCrc(rec)]);
  }

  async data(index: number, hash: Buffer, content: Buffer): Promise<void> {
    const rec = Buffer.alloc(DATA_RECORD_LEN);
    rec.write('D', 0, 'latin1');
    rec.writeBigUInt64BE(BigInt(index), 1);
    rec.writeUInt32BE(content.length, 9);
    hash.copy(rec, 13);
    await this.append(this.mode === 'inline' ? [withCrc(rec), content] : [withCrc(rec)]);
  }

  async checkpoint(next: number): Promise<void> {
    await this.sync();
    const rec = Buffer.alloc(CHECKPOINT_RECORD_LEN);
    rec.write('C', 0, 'latin1');
    rec.writeBigUInt64BE(BigInt(next), 1);
    await this.append([withCrc(rec)]);
  }

  async sync(): Promise<void> {
    await this.flush.settle();
    await this.fh.sync();
  }

  async close(): Promise<void> {
    await this.flush.drained();
    await this.fh.close();
  }

  private async append(bufs: Buffer[]): Promise<void> {
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const { bytesWritten } = await this.fh.writev(bufs, this.position);
    if (bytesWritten !== total) {
      // Rare partial vectored write: finish it piecewise.
      let done = bytesWritten;
      let pos = this.position;
      for (const b of bufs) {
        if (done >= b.length) {
          done -= b.length;
          pos += b.length;
          continue;
        }
        await writeFully(this.fh, b.subarray(done), pos + done);
        pos += b.length;
        done = 0;
      }
    }
    this.position += total;
    this.flush.wrote(total);
  }
}

/**
 * Reads a stripe log record by record. `onRecord` sees every valid record up to the first damaged or torn one
 * (strict: throw instead). Returns the offset after the last checkpoint and the checkpoint's `next` block.
 */
export async function scanStripeLog(
  path: string,
  // formatVersion: a committed log of the previous format is finished once when a store is upgraded (same records).
  expect: { stagingId: string; stripe: number; mode: StagingMode; formatVersion?: number },
  onRecord: (rec: LogRecord) => void | Promise<void>,
  strict = false,
): Promise<{ validLength: number; next: number | undefined; endLength: number }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const want = logHeader(expect.stagingId, expect.stripe, expect.formatVersion);
    const head = await readFully(fh, want.length, 0);
    if (!head.equals(want)) {
      if (strict) throw new Error(`${path}: not the log of staging ${expect.stagingId} stripe ${expect.stripe}`);
      return { validLength: -1, next: undefined, endLength: 0 };
    }
    let pos = head.length;
    let validLength = pos;
    let next: number | undefined;
    const fixed = Buffer.alloc(DATA_RECORD_LEN);
    const bad = (why: string): never => {
      throw new Error(`${path}: damaged redo log at offset ${pos}: ${why}`);
    };
    while (pos < size) {
      // The longest fixed part in one read (a shorter record's tail is simply not looked at): one syscall a record.
      const got = await readFully(fh, DATA_RECORD_LEN, pos, fixed);
      const tag = got.subarray(0, 1).toString('latin1');
      const len =
        tag === 'D'
          ? DATA_RECORD_LEN
          : tag === 'C'
            ? CHECKPOINT_RECORD_LEN
            : tag === 'U' || tag === 'Z'
              ? RUN_RECORD_LEN
              : 0;
      if (len === 0) {
        if (strict) bad(`unknown record ${JSON.stringify(tag)}`);
        break;
      }
      const rec = got.subarray(0, len);
      if (rec.length < len || crc32(rec.subarray(0, len - 4)) !== rec.readUInt32BE(len - 4)) {
        if (strict) bad('torn or corrupt record');
        break;
      }
      const num = Number(rec.readBigUInt64BE(1));
      if (tag === 'C') {
        pos += len;
        validLength = pos;
        next = num;
        await onRecord({ type: 'C', next: num });
        continue;
      }
      if (tag === 'D') {
        const length = rec.readUInt32BE(9);
        const hash = Buffer.from(rec.subarray(13, 13 + HASH_LEN));
        const dataOffset = pos + len;
        const recEnd = dataOffset + (expect.mode === 'inline' ? length : 0);
        if (recEnd > size) {
          if (strict) bad('data cut short');
          break;
        }
        await onRecord({ type: 'D', index: num, length, hash, dataOffset });
        pos = recEnd;
        continue;
      }
      await onRecord({ type: tag as 'U' | 'Z', first: num, count: rec.readUInt32BE(9) });
      pos += len;
    }
    return { validLength, next, endLength: pos };
  } finally {
    await fh.close();
  }
}
