// Reading a kept version back: block i is zeros (zero hash), the image's block (same hash as the current manifest's),
// or the chunk named by its hash. Every block is checked against the version's hash before it is handed out.
//
// No store lock is taken, so a restore can run beside a transfer: while an update is being applied the image may
// already hold a block's new content although the manifest still names the old one, but the old content was saved to
// the chunk store before the update was committed. So a block that fails its check from one source is read from the
// other before the version is declared damaged.
import { webcrypto } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { isErrno, ManifestDamagedError, rethrowDiskFull } from './errors.js';
import { readChunk } from './chunks.js';
import { BackgroundFlush, fsyncDir, punchHoles, readFully, unlinkIfExists, type HoleRange } from './fsutil.js';
import { chunkPath, storePaths } from './layout.js';
import { acquireThreads, releaseThreads, restoreThreadCount, type RestoreThread } from './restore-pool.js';
import type { BlockSource, SerializedError, WorkerReply, WorkerRequest } from './restore-worker.js';
import { blockLength, hashAt, readManifest, zeroHash, type Manifest } from './manifest.js';
import { VersionDamagedError } from './errors.js';
import { listVersions, readVersionManifest } from './versions.js';

export interface RestoreOptions {
  onProgress?: (p: { blocksDone: number; blockCount: number }) => void;
  signal?: AbortSignal;
}

export interface VersionBlock {
  index: number;
  /** Valid until the next block is asked for (the buffer is reused). Do not modify. */
  data: Buffer;
  source: 'image' | 'chunk' | 'zero';
}

async function currentManifest(backupsDir: string, key: string): Promise<Manifest | undefined> {
  try {
    return await readManifest(storePaths(backupsDir, key).manifest);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || err instanceof ManifestDamagedError) return undefined;
    throw err;
  }
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

export interface VersionReader {
  manifest: Manifest;
  /** Where block i is looked for first: its hash is the zero block's, the image's at i (current manifest), or else. */
  source(i: number): VersionBlock['source'];
  /** Block i, checked, read into `buf` (or the shared zeros); VersionDamagedError if no source has it. */
  read(i: number, buf: Buffer): Promise<VersionBlock>;
  /**
   * Block i from where source(i) points, NOT checked against its hash (read() if that source lacks it): only for a
   * caller that checks every block itself and comes back to read() for one that fails (a restore onto a device,
   * whose agent checks each block against the version's hash before it writes it).
   */
  readUnchecked(i: number, buf: Buffer): Promise<VersionBlock>;
  close(): Promise<void>;
}

/**
 * Reads the blocks of one version, each checked against the version's hash; any number of reads may run at once
 * (each into its own buffer). Takes no lock (see the top of this file).
 */
export async function openVersionReader(backupsDir: string, key: string, versionId: string): Promise<VersionReader> {
  const version = await readVersionManifest(backupsDir, key, versionId);
  const current = await currentManifest(backupsDir, key);
  const { sizeBytes, blockSize } = version.header;
  const sameGeometry = current?.header.blockSize === blockSize;
  const image = await openIfExists(storePaths(backupsDir, key).image);
  const zeros = Buffer.alloc(blockSize);
  const fromImage = async (i: number, len: number, buf: Buffer) => {
    if (!image) return undefined;
    const d = await readFully(image, len, i * blockSize, buf);
    return d.length === len ? d : Buffer.concat([d, zeros.subarray(0, len - d.length)]);
  };
  const source = (i: number): VersionBlock['source'] => {
    const want = hashAt(version.hashes, i);
    if (want.equals(zeroHash(blockLength(i, sizeBytes, blockSize)))) return 'zero';
    const inImage =
      current !== undefined && sameGeometry && i < current.header.blockCount && hashAt(current.hashes, i).equals(want);
    return inImage ? 'image' : 'chunk';
  };
  const read = async (i: number, buf: Buffer): Promise<VersionBlock> => {
    const want = hashAt(version.hashes, i);
    const len = blockLength(i, sizeBytes, blockSize);
    const first = source(i);
    if (first === 'zero') return { index: i, data: zeros.subarray(0, len), source: 'zero' };
    const hex = want.toString('hex');
    for (const source of first === 'image' ? (['image', 'chunk'] as const) : (['chunk', 'image'] as const)) {
      const data = source === 'image' ? await fromImage(i, len, buf) : await readChunk(backupsDir, hex, len, buf);
      if (data && data.length === len && (await sha256(data)).equals(want)) {
        return { index: i, data, source };
      }
    }
    throw new VersionDamagedError(
      `${key} version ${versionId}: block ${i} (SHA-256 ${hex}) is neither in the image nor in the chunk store ` +
        `with that content: the version cannot be restored byte-exact`,
      key,
      versionId,
      i,
    );
  };
  return {
    manifest: version,
    source,
    read,
    async readUnchecked(i, buf) {
      const len = blockLength(i, sizeBytes, blockSize);
      const first = source(i);
      if (first === 'zero') return { index: i, data: zeros.subarray(0, len), source: 'zero' };
      const data =
        first === 'image'
          ? await fromImage(i, len, buf)
          : await readChunk(backupsDir, hashAt(version.hashes, i).toString('hex'), len, buf);
      if (data && data.length === len) return { index: i, data, source: first };
      return read(i, buf);
    },
    async close() {
      await image?.close();
    },
  };
}

/** SHA-256 in the thread pool (WebCrypto), so that a restore's parallel blocks are hashed on every core. */
async function sha256(data: Buffer): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data));
}

/** Every block of a version in order, each checked against its hash (VersionDamagedError if no source has it). */
export async function* readVersionBlocks(
  backupsDir: string,
  key: string,
  versionId: string,
  options: RestoreOptions = {},
): AsyncGenerator<VersionBlock> {
  const reader = await openVersionReader(backupsDir, key, versionId);
  const { blockSize, blockCount } = reader.manifest.header;
  const buf = Buffer.allocUnsafe(blockSize);
  try {
    for (let i = 0; i < blockCount; i++) {
      options.signal?.throwIfAborted();
      yield await reader.read(i, buf);
      options.onProgress?.({ blocksDone: i + 1, blockCount });
    }
  } finally {
    await reader.close();
  }
}

export interface RestoreResult {
  key: string;
  versionId: string;
  toFile: string;
  sizeBytes: number;
  blockCount: number;
  blocksFromImage: number;
  blocksFromChunks: number;
  zeroBlocks: number;
  /** The image was cloned (reflink) first, and only the blocks that differ were written. */
  reflinked: boolean;
  bytesWritten: number;
}

/** The newest version's id, for a restore that names none. */
export async function newestVersionId(backupsDir: string, key: string): Promise<string | undefined> {
  return (await listVersions(backupsDir, key)).find((v) => v.newest)?.versionId;
}

/**
 * Write a version as a sparse raw image to `toFile` (through `<toFile>.partial`, renamed when complete and fsynced).
 * Where the filesystem can clone the image (reflink: btrfs, XFS), it is cloned and only the blocks that differ are
 * written; elsewhere a sparse copy. Either way every block is checked against the version's hash: on a thread per core
 * (restore-worker.ts), each reading, checking and writing whole blocks, since SHA-256 is most of a restore's CPU.
 */
export async function restoreVersion(
  backupsDir: string,
  key: string,
  versionId: string,
  toFile: string,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const version = await readVersionManifest(backupsDir, key, versionId);
  const { sizeBytes, blockSize, blockCount } = version.header;
  const partial = `${toFile}.partial`;
  const result: RestoreResult = {
    key,
    versionId,
    toFile,
    sizeBytes,
    blockCount,
    blocksFromImage: 0,
    blocksFromChunks: 0,
    zeroBlocks: 0,
    reflinked: false,
    bytesWritten: 0,
  };
  await unlinkIfExists(partial);
  result.reflinked = await tryReflink(storePaths(backupsDir, key).image, partial);
  const reader = await openVersionReader(backupsDir, key, versionId);
  const out = await open(partial, result.reflinked ? 'r+' : 'w');
  let threads: RestoreThread[] = [];
  try {
    await out.truncate(sizeBytes);
    const holes: HoleRange[] = [];
    // Zero blocks are holes already (a sparse copy) or compared like any other (a clone): only the clone reads them.
    const todo: number[] = [];
    for (let i = 0; i < blockCount; i++) {
      if (!result.reflinked && reader.source(i) === 'zero') result.zeroBlocks++;
      else todo.push(i);
    }
    let done = result.zeroBlocks;
    if (done > 0) options.onProgress?.({ blocksDone: done, blockCount });
    const flusher = new BackgroundFlush(out, FLUSH_BYTES);
    threads = acquireThreads(Math.min(restoreThreadCount(), Math.max(1, todo.length)));
    const image = storePaths(backupsDir, key).image;
    const failure = await runThreads(threads, todo, {
      open: { type: 'open', image, out: partial, blockSize, clone: result.reflinked },
      request: (i) => {
        const want = hashAt(reader.manifest.hashes, i);
        const first = reader.source(i);
        const order: BlockSource[] =
          first === 'zero' ? ['zero'] : first === 'image' ? ['image', 'chunk'] : ['chunk', 'image'];
        return {
          type: 'block',
          index: i,
          offset: i * blockSize,
          length: blockLength(i, sizeBytes, blockSize),
          want,
          order,
          chunk: chunkPath(backupsDir, want.toString('hex')),
        };
      },
      done: (reply) => {
        if (reply.source === 'zero') result.zeroBlocks++;
        else if (reply.source === 'image') result.blocksFromImage++;
        else result.blocksFromChunks++;
        if (reply.hole)
          holes.push({ offset: reply.index * blockSize, length: blockLength(reply.index, sizeBytes, blockSize) });
        result.bytesWritten += reply.wrote;
        flusher.wrote(reply.wrote);
        options.onProgress?.({ blocksDone: ++done, blockCount });
      },
      missing: (i) => {
        const hex = hashAt(reader.manifest.hashes, i).toString('hex');
        return new VersionDamagedError(
          `${key} version ${versionId}: block ${i} (SHA-256 ${hex}) is neither in the image nor in the chunk store ` +
            `with that content: the version cannot be restored byte-exact`,
          key,
          versionId,
          i,
        );
      },
      signal: options.signal,
    });
    // A thread's failure says more than the flush's (which is then likely the same disk error).
    await flusher.drained();
    if (failure !== undefined) throw failure;
    await flusher.settle();
    if (holes.length > 0) await punchHoles(partial, out, holes);
    await out.sync();
  } catch (err) {
    await out.close().catch(() => undefined);
    await reader.close().catch(() => undefined);
    await unlinkIfExists(partial).catch(() => undefined);
    rethrowDiskFull(err, toFile);
  } finally {
    releaseThreads(threads);
  }
  await reader.close();
  await out.close();
  await rename(partial, toFile);
  await fsyncDir(dirname(toFile));
  return result;
}

interface ThreadJob {
  open: Extract<WorkerRequest, { type: 'open' }>;
  request(index: number): Extract<WorkerRequest, { type: 'block' }>;
  done(reply: Extract<WorkerReply, { type: 'done' }>): void;
  missing(index: number): Error;
  signal?: AbortSignal;
}

/** Blocks a thread is given ahead, so that it never waits for the main thread between two. */
const THREAD_QUEUE = 2;

/**
 * Restore the blocks `todo` on `threads`, each fed up to THREAD_QUEUE blocks at a time. Resolves once every thread
 * has answered every block it was given and closed its files (so `partial` can be removed or renamed), with the first
 * failure (nothing more is handed out after it), or undefined.
 */
function runThreads(threads: RestoreThread[], todo: number[], job: ThreadJob): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let next = 0;
    let failure: Error | undefined;
    let open = threads.length;
    const fail = (err: Error) => {
      failure ??= err;
    };
    for (const t of threads) {
      let inFlight = 0;
      let closing = false;
      const finish = () => {
        if (closing) return;
        closing = true;
        t.post({ type: 'close' });
      };
      let settled = false;
      const closed = () => {
        if (settled) return;
        settled = true;
        t.detach();
        if (--open === 0) resolve(failure);
      };
      const feed = () => {
        while (failure === undefined && inFlight < THREAD_QUEUE && next < todo.length) {
          if (job.signal?.aborted) {
            fail(abortReason(job.signal));
            break;
          }
          t.post(job.request(todo[next++]!));
          inFlight++;
        }
        if (inFlight === 0) finish();
      };
      t.attach(
        (reply) => {
          if (reply.type === 'closed') return closed();
          if (reply.type === 'error') {
            fail(deserialize(reply.error));
            if (reply.index === null && closing) return closed();
          } else if (reply.type === 'missing') fail(job.missing(reply.index));
          else if (failure === undefined) job.done(reply);
          if (reply.index !== null) inFlight--;
          feed();
        },
        (err) => {
          // The thread is gone (only a bug kills one): none of its blocks will be answered. Its descriptors stay open
          // until the process ends, on a partial file that is removed below.
          fail(err);
          closing = true;
          inFlight = 0;
          closed();
        },
      );
      t.post(job.open);
      feed();
    }
  });
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason ?? 'aborted'));
}

function deserialize(e: SerializedError): Error {
  return Object.assign(new Error(e.message), e);
}

/** A datasync each this many bytes written (BackgroundFlush), so the final fsync has only the tail left. */
const FLUSH_BYTES = 32 << 20;

/** Clone the image to `to` if the filesystem shares extents (FICLONE); false if it cannot (then nothing is made). */
async function tryReflink(image: string, to: string): Promise<boolean> {
  try {
    await stat(image);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
  try {
    await copyFile(image, to, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch (err) {
    await unlinkIfExists(to);
    // No clone across filesystems or on one that cannot: a plain sparse copy instead.
    for (const code of ['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY'])
      if (isErrno(err, code)) return false;
    throw err;
  }
}
