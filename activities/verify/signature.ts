// What a raw disk image holds, from its bytes alone: a filesystem on the whole device (the way DigitalOcean formats a
// volume), or a partition table (MBR or GPT) whose partitions each hold one. Only the checkers dosvob can run are told
// apart from "unknown"; a few common others are named so that `unchecked` says why.

/** Filesystems with a read-only checker dosvob runs. */
export type CheckableFs = 'ext2' | 'ext3' | 'ext4' | 'xfs';

export type FsSignature =
  | { kind: 'checkable'; fs: CheckableFs }
  /** Recognised, but dosvob has no checker for it (btrfs, LUKS, swap…), or nothing at all (all zeros). */
  | { kind: 'other'; what: string };

/** Bytes of the device's start that detection reads: enough for btrfs's superblock at 64 KiB. */
export const HEAD_BYTES = 68 * 1024;

const EXT_MAGIC_OFFSET = 1080;
const EXT_COMPAT_HAS_JOURNAL = 0x4;
const EXT_INCOMPAT_EXTENTS = 0x40;
const EXT_INCOMPAT_64BIT = 0x80;
const EXT_INCOMPAT_FLEX_BG = 0x200;

const EXT_INCOMPAT_RECOVER = 0x4;

/**
 * An ext3/4 superblock that says its journal holds transactions not yet written to their places: what a snapshot of a
 * mounted filesystem looks like. Checked as it is, the filesystem may look broken where the replay would mend it.
 */
export function extNeedsRecovery(head: Buffer): boolean {
  if (head.length < 1024 + 0x64 || head.readUInt16LE(EXT_MAGIC_OFFSET) !== 0xef53) return false;
  const compat = head.readUInt32LE(1024 + 0x5c);
  const incompat = head.readUInt32LE(1024 + 0x60);
  return (compat & EXT_COMPAT_HAS_JOURNAL) !== 0 && (incompat & EXT_INCOMPAT_RECOVER) !== 0;
}

function ascii(buf: Buffer, offset: number, length: number): string {
  return offset + length <= buf.length ? buf.toString('latin1', offset, offset + length) : '';
}

/** The filesystem that starts at the beginning of `head` (the first HEAD_BYTES of a device or partition), if any. */
export function detectFilesystem(head: Buffer): FsSignature | undefined {
  if (ascii(head, 0, 4) === 'XFSB') return { kind: 'checkable', fs: 'xfs' };
  if (head.length >= EXT_MAGIC_OFFSET + 2 && head.readUInt16LE(EXT_MAGIC_OFFSET) === 0xef53) {
    // The superblock starts at 1024: s_feature_compat at +0x5C, s_feature_incompat at +0x60.
    const compat = head.readUInt32LE(1024 + 0x5c);
    const incompat = head.readUInt32LE(1024 + 0x60);
    const ext4 = (incompat & (EXT_INCOMPAT_EXTENTS | EXT_INCOMPAT_64BIT | EXT_INCOMPAT_FLEX_BG)) !== 0;
    return { kind: 'checkable', fs: ext4 ? 'ext4' : compat & EXT_COMPAT_HAS_JOURNAL ? 'ext3' : 'ext2' };
  }
  if (ascii(head, 0x10040, 8) === '_BHRfS_M') return { kind: 'other', what: 'btrfs (no read-only checker is run)' };
  if (ascii(head, 0, 6) === 'LUKS\xba\xbe')
    return { kind: 'other', what: 'LUKS encrypted (its contents are unreadable)' };
  if (ascii(head, 4086, 10) === 'SWAPSPACE2' || ascii(head, 4086, 10) === 'SWAP-SPACE')
    return { kind: 'other', what: 'swap space (no filesystem)' };
  if (ascii(head, 0x52, 5) === 'FAT32' || ascii(head, 0x36, 3) === 'FAT')
    return { kind: 'other', what: 'FAT (no read-only checker is run)' };
  if (head.every((b) => b === 0))
    return { kind: 'other', what: 'no filesystem (the start of the device is all zeros)' };
  return undefined;
}

export interface Partition {
  /** 1-based, as the partition table numbers it (sda1, sda2…). */
  number: number;
  offset: number;
  length: number;
  /** The MBR type byte (hex) or the GPT type GUID. */
  type: string;
  name?: string;
}

export interface PartitionTable {
  kind: 'mbr' | 'gpt';
  partitions: Partition[];
  /** An MBR's extended partitions: the logical partitions inside them are not followed. */
  extended?: Partition[];
}

const MBR_EXTENDED = new Set([0x05, 0x0f, 0x85]);
const MBR_PROTECTIVE = 0xee;

/** A random-access reader of the image (short at its end). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

function guidText(b: Buffer): string {
  const hex = (s: Buffer) => s.toString('hex');
  const le = (s: Buffer) => hex(Buffer.from(s).reverse());
  return `${le(b.subarray(0, 4))}-${le(b.subarray(4, 6))}-${le(b.subarray(6, 8))}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`;
}

async function readGpt(readAt: ReadAt, sector: number, sizeBytes: number): Promise<PartitionTable | undefined> {
  const header = await readAt(sector, 92);
  if (ascii(header, 0, 8) !== 'EFI PART') return undefined;
  const entriesLba = Number(header.readBigUInt64LE(72));
  const count = header.readUInt32LE(80);
  const entrySize = header.readUInt32LE(84);
  if (entrySize < 128 || count > 1024) return { kind: 'gpt', partitions: [] };
  const entries = await readAt(entriesLba * sector, count * entrySize);
  const partitions: Partition[] = [];
  for (let i = 0; i < count && (i + 1) * entrySize <= entries.length; i++) {
    const e = entries.subarray(i * entrySize, (i + 1) * entrySize);
    if (e.subarray(0, 16).every((b) => b === 0)) continue;
    const first = Number(e.readBigUInt64LE(32));
    const last = Number(e.readBigUInt64LE(40));
    const offset = first * sector;
    if (last < first || offset >= sizeBytes) continue;
    const name = e.toString('utf16le', 56, 128).replace(/\0.*$/s, '');
    partitions.push({
      number: i + 1,
      offset,
      length: Math.min((last - first + 1) * sector, sizeBytes - offset),
      type: guidText(e.subarray(0, 16)),
      ...(name ? { name } : {}),
    });
  }
  return { kind: 'gpt', partitions };
}

/**
 * The partition table at the start of the image, if it has one. An MBR's extended partition (the logical ones inside
 * it) is listed apart, not followed; a protective MBR means GPT (512- or 4096-byte sectors).
 */
export async function readPartitionTable(readAt: ReadAt, sizeBytes: number): Promise<PartitionTable | undefined> {
  const mbr = await readAt(0, 512);
  if (mbr.length < 512 || mbr[510] !== 0x55 || mbr[511] !== 0xaa) return undefined;
  const entries = [0, 1, 2, 3].map((i) => mbr.subarray(446 + i * 16, 462 + i * 16));
  // A boot sector of a filesystem (FAT) also ends in 55 AA: a table's entries have boot flags 0x00 or 0x80 only.
  if (entries.some((e) => e[0] !== 0 && e[0] !== 0x80)) return undefined;
  if (entries.some((e) => e[4] === MBR_PROTECTIVE)) {
    for (const sector of [512, 4096]) {
      const gpt = await readGpt(readAt, sector, sizeBytes);
      if (gpt) return gpt;
    }
  }
  const partitions: Partition[] = [];
  const extended: Partition[] = [];
  entries.forEach((e, i) => {
    const type = e[4]!;
    const start = e.readUInt32LE(8) * 512;
    const length = e.readUInt32LE(12) * 512;
    if (type === 0 || length === 0 || start >= sizeBytes) return;
    const p = { number: i + 1, offset: start, length: Math.min(length, sizeBytes - start), type: type.toString(16) };
    (MBR_EXTENDED.has(type) ? extended : partitions).push(p);
  });
  if (partitions.length === 0 && extended.length === 0) return undefined;
  return extended.length > 0 ? { kind: 'mbr', partitions, extended } : { kind: 'mbr', partitions };
}

export type ImageLayout =
  { kind: 'filesystem'; signature: FsSignature } | { kind: 'partitioned'; table: PartitionTable } | { kind: 'unknown' };

/** A filesystem on the whole device is looked for first: its first sector may well end in 55 AA too. */
export async function detectLayout(readAt: ReadAt, sizeBytes: number): Promise<ImageLayout> {
  const head = await readAt(0, HEAD_BYTES);
  const fs = detectFilesystem(head);
  if (fs?.kind === 'checkable') return { kind: 'filesystem', signature: fs };
  const table = await readPartitionTable(readAt, sizeBytes);
  if (table) return { kind: 'partitioned', table };
  return fs ? { kind: 'filesystem', signature: fs } : { kind: 'unknown' };
}
