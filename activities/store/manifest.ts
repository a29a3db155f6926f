// The manifest: dosvob's record of what backups/<volume>.img holds, so that an incremental sync reads none of the image.
//
// Binary file, big-endian:
//   "DOSVOBMF"  8 bytes magic
//   u32         format version (STORE_FORMAT_VERSION)
//   u32         length of the JSON header
//   JSON header ManifestHeader (volume, size, block size, snapshot, digest, counts)
//   blockCount x 32 bytes  SHA-256 of each block (the last block may be shorter than blockSize; hashed as is)
//   32 bytes    SHA-256 of everything above (detects a torn or damaged manifest)
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { ManifestDamagedError, StoreFormatError } from './errors.js';
import { STORE_FORMAT_VERSION } from './layout.js';
import { writeFileAtomic } from './fsutil.js';

export const HASH_LEN = 32;
const MAGIC = Buffer.from('DOSVOBMF', 'latin1');

export interface ManifestHeader {
  formatVersion: number;
  hashAlgorithm: 'sha256';
  volumeId: string;
  volumeName: string;
  sizeBytes: number;
  blockSize: number;
  blockCount: number;
  snapshotId: string | null;
  snapshotCreatedAt: string | null;
  /** When this image version was committed (ISO time). */
  committedAt: string;
  /** SHA-256 over the concatenated block hashes, hex. Both sides of the transfer agreed on it. */
  digest: string;
  zeroBlocks: number;
  /** How the image came to be: 'sync' (transferred) or 'adopted' (hashed from an image found in place). */
  origin: 'sync' | 'adopted';
  /**
   * Blocks the last update could not write because their data failed its check in the redo log: they still hold
   * what was there before (their hashes say so), so the next sync fetches them. Absent when every block was applied.
   */
  staleBlocks?: StaleBlocks;
  /**
   * Format 2: the version this manifest describes (versions.ts), e.g. `20261202T134500Z-1a2b3c`. Absent only in a
   * format-1 manifest being upgraded.
   */
  versionId?: string;
  /** The DigitalOcean region of the volume (null: not known, e.g. a run started before regions were passed). */
  region?: string | null;
  /** The run that made this version (null: adopted, upgraded, or a run that did not say). */
  runId?: string | null;
  /** Blocks whose content differs from the previous version (null: a first sync or not known). */
  blocksChanged?: number | null;
  /** Set when this manifest was converted from an older store format (its version id is derived, not drawn). */
  upgradedFrom?: number;
}

export interface StaleBlocks {
  /** The staging (update) whose redo log was damaged. */
  stagingId: string;
  count: number;
  /** The first few block indexes. */
  first: number[];
}

export interface Manifest {
  header: ManifestHeader;
  /** blockCount * 32 bytes. */
  hashes: Buffer;
}

export function blockCountFor(sizeBytes: number, blockSize: number): number {
  return Math.ceil(sizeBytes / blockSize);
}

export function blockLength(index: number, sizeBytes: number, blockSize: number): number {
  return Math.min(blockSize, sizeBytes - index * blockSize);
}

const zeroHashes = new Map<number, Buffer>();
/** SHA-256 of `length` zero bytes (cached). */
export function zeroHash(length: number): Buffer {
  let h = zeroHashes.get(length);
  if (!h) {
    h = createHash('sha256').update(Buffer.alloc(length)).digest();
    zeroHashes.set(length, h);
  }
  return h;
}

export function digestOf(hashes: Buffer): string {
  return createHash('sha256').update(hashes).digest('hex');
}

export function hashAt(hashes: Buffer, index: number): Buffer {
  return hashes.subarray(index * HASH_LEN, (index + 1) * HASH_LEN);
}

export function countZeroBlocks(hashes: Buffer, sizeBytes: number, blockSize: number): number {
  const n = blockCountFor(sizeBytes, blockSize);
  let zeros = 0;
  for (let i = 0; i < n; i++) if (hashAt(hashes, i).equals(zeroHash(blockLength(i, sizeBytes, blockSize)))) zeros++;
  return zeros;
}

export function encodeManifest(m: Manifest): Buffer {
  if (m.hashes.length !== m.header.blockCount * HASH_LEN)
    throw new Error('manifest: hash list does not match block count');
  const json = Buffer.from(JSON.stringify(m.header), 'utf8');
  const head = Buffer.alloc(16);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(m.header.formatVersion, 8);
  head.writeUInt32BE(json.length, 12);
  const body = Buffer.concat([head, json, m.hashes]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** Reads only the format version of a manifest file (undefined if it is not a dosvob manifest at all). */
export async function peekManifestVersion(path: string): Promise<number | undefined> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(12);
    const { bytesRead } = await fh.read(head, 0, 12, 0);
    if (bytesRead < 12 || !head.subarray(0, 8).equals(MAGIC)) return undefined;
    return head.readUInt32BE(8);
  } finally {
    await fh.close();
  }
}

/**
 * Decode and check a manifest. `acceptVersions`: the formats the caller can handle (default only the current one);
 * format 1 has the same layout, its header just lacks the version fields.
 */
export function decodeManifest(
  buf: Buffer,
  path = 'manifest',
  acceptVersions: readonly number[] = [STORE_FORMAT_VERSION],
): Manifest {
  // A file that is not a manifest at all (truncated, zeroed by a crash, overwritten) is damage, not another format:
  // formats are told apart by the version after the magic.
  if (buf.length < 16 + 32 || !buf.subarray(0, 8).equals(MAGIC)) {
    throw new ManifestDamagedError(`${path} is damaged (not a dosvob manifest)`);
  }
  const version = buf.readUInt32BE(8);
  if (!acceptVersions.includes(version)) {
    throw new StoreFormatError(
      `${path} was written by store format version ${version}; this dosvob reads version ${STORE_FORMAT_VERSION}` +
        (version > STORE_FORMAT_VERSION ? ' (a newer dosvob wrote it: upgrade dosvob to read it)' : ''),
      version,
    );
  }
  const body = buf.subarray(0, buf.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(buf.subarray(buf.length - 32))
  ) {
    throw new ManifestDamagedError(`${path} is damaged (checksum mismatch)`);
  }
  const jsonLen = buf.readUInt32BE(12);
  let header: ManifestHeader;
  try {
    header = JSON.parse(buf.subarray(16, 16 + jsonLen).toString('utf8')) as ManifestHeader;
  } catch {
    throw new ManifestDamagedError(`${path} is damaged (header)`);
  }
  const hashes = Buffer.from(body.subarray(16 + jsonLen));
  if (hashes.length !== header.blockCount * HASH_LEN) {
    throw new ManifestDamagedError(`${path} is damaged (hash list length)`);
  }
  if (digestOf(hashes) !== header.digest) throw new ManifestDamagedError(`${path} is damaged (digest mismatch)`);
  return { header, hashes };
}

export async function readManifest(path: string, acceptVersions?: readonly number[]): Promise<Manifest> {
  return decodeManifest(await readFile(path), path, acceptVersions);
}

/**
 * Only the JSON header of a manifest (no checksum check: for listing many versions quickly; readManifest checks).
 * Throws ManifestDamagedError if the header cannot be read, StoreFormatError for another format.
 */
export async function readManifestHeader(path: string): Promise<ManifestHeader> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(16);
    const { bytesRead } = await fh.read(head, 0, 16, 0);
    if (bytesRead < 16 || !head.subarray(0, 8).equals(MAGIC)) {
      throw new ManifestDamagedError(`${path} is damaged (not a dosvob manifest)`);
    }
    const version = head.readUInt32BE(8);
    if (version !== STORE_FORMAT_VERSION) {
      throw new StoreFormatError(`${path} was written by store format version ${version}`, version);
    }
    const jsonLen = head.readUInt32BE(12);
    if (jsonLen > 1 << 20) throw new ManifestDamagedError(`${path} is damaged (header length)`);
    const json = Buffer.alloc(jsonLen);
    const r = await fh.read(json, 0, jsonLen, 16);
    try {
      if (r.bytesRead < jsonLen) throw new Error('short');
      return JSON.parse(json.toString('utf8')) as ManifestHeader;
    } catch {
      throw new ManifestDamagedError(`${path} is damaged (header)`);
    }
  } finally {
    await fh.close();
  }
}

export async function writeManifest(path: string, m: Manifest): Promise<void> {
  await writeFileAtomic(path, encodeManifest(m));
}
