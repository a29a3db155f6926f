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
import { StoreFormatError } from './errors.js';
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

export function decodeManifest(buf: Buffer, path = 'manifest'): Manifest {
  if (buf.length < 16 + 32 || !buf.subarray(0, 8).equals(MAGIC)) {
    throw new StoreFormatError(`${path} is not a dosvob manifest`, undefined);
  }
  const version = buf.readUInt32BE(8);
  if (version !== STORE_FORMAT_VERSION) {
    throw new StoreFormatError(
      `${path} was written by store format version ${version}; this dosvob reads version ${STORE_FORMAT_VERSION}`,
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
    throw new Error(`${path} is damaged (checksum mismatch)`);
  }
  const jsonLen = buf.readUInt32BE(12);
  const header = JSON.parse(buf.subarray(16, 16 + jsonLen).toString('utf8')) as ManifestHeader;
  const hashes = Buffer.from(body.subarray(16 + jsonLen));
  if (hashes.length !== header.blockCount * HASH_LEN) throw new Error(`${path} is damaged (hash list length)`);
  if (digestOf(hashes) !== header.digest) throw new Error(`${path} is damaged (digest mismatch)`);
  return { header, hashes };
}

export async function readManifest(path: string): Promise<Manifest> {
  return decodeManifest(await readFile(path), path);
}

export async function writeManifest(path: string, m: Manifest): Promise<void> {
  await writeFileAtomic(path, encodeManifest(m));
}
