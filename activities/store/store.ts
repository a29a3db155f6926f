// The local store of one volume: the image, its manifest, and the commit/apply/recovery protocol that keeps a
// complete image at every instant.
//
// Commit protocol of a transfer (staging/ already holds verified stripe logs):
//   1. fsync the logs (and incoming.img on a first sync), check free space for the apply
//   2. write manifest.next (atomically), then staging/COMMIT (atomically): from here on the transfer is decided
//   3. apply: 'inline' mode replays the logs onto the image (pwrite data, punch holes for zeroed blocks, set size),
//      fsync; 'direct' mode (first sync) renames incoming.img over the image path
//   4. rename manifest.next -> manifest, remove staging/
// Every step of 3 and 4 is idempotent, so a crash anywhere after 2 is finished by `recover()` at the next start;
// a crash before 2 leaves the old image and manifest untouched.
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, statfs, writeFile, readFile } from 'node:fs/promises';
import { DiskFullError, StoreFormatError, VolumeBusyError, isErrno, rethrowDiskFull } from './errors.js';
import {
  exists,
  fsyncDir,
  punchHoles,
  readFully,
  unlinkIfExists,
  writeFileAtomic,
  writeFully,
  type HoleRange,
} from './fsutil.js';
import { STORE_FORMAT_VERSION, storePaths, type StorePaths } from './layout.js';
import {
  HASH_LEN,
  blockCountFor,
  blockLength,
  countZeroBlocks,
  digestOf,
  hashAt,
  peekManifestVersion,
  readManifest,
  writeManifest,
  zeroHash,
  type Manifest,
} from './manifest.js';
import { readJsonVersioned, scanStripeLog, type CommitRecord, type StagingPlan } from './staging.js';

export interface StoreHooks {
  /** Called after each record applied to the image (tests use it to crash mid-apply). */
  onApplyRecord?: (recordsApplied: number) => void | Promise<void>;
}

export interface OpenStoreOptions {
  backupsDir: string;
  volumeName: string;
  /** Consent to discard dosvob data written by another store format version (the image itself is kept). */
  allowFormatUpgrade?: boolean;
  hooks?: StoreHooks;
}

export type RecoveryOutcome = 'none' | 'applied' | 'discarded-format-upgrade';

const locksHeld = new Set<string>();

export class VolumeStore {
  manifest: Manifest | undefined;
  /** The image was changed outside dosvob since the last commit (size/mtime differ): its manifest can't be trusted. */
  imageChanged = false;
  private released = false;

  private constructor(
    readonly paths: StorePaths,
    private readonly hooks: StoreHooks,
    public recovery: RecoveryOutcome,
  ) {}

  /** Lock the volume's store, finish any committed transfer, check the format, load the manifest. */
  static async open(opts: OpenStoreOptions): Promise<VolumeStore> {
    const paths = storePaths(opts.backupsDir, opts.volumeName);
    await mkdir(paths.dataDir, { recursive: true });
    await acquireLock(paths);
    try {
      let recovery: RecoveryOutcome = 'none';
      const formatProblem = await findForeignFormat(paths);
      if (formatProblem) {
        if (!opts.allowFormatUpgrade) {
          throw new StoreFormatError(
            `${formatProblem.path} was written by dosvob store format ${formatProblem.version ?? 'unknown'}, ` +
              `this dosvob uses format ${STORE_FORMAT_VERSION}. Refusing to touch ${paths.dataDir} or ${paths.image}. ` +
              `Rerun with allowFormatUpgrade to convert (the image is kept and re-hashed locally).`,
            formatProblem.version,
          );
        }
        // Consent given: drop dosvob's own data; the image stays and is adopted (re-hashed) below as found.
        await rm(paths.staging, { recursive: true, force: true });
        await unlinkIfExists(paths.manifest);
        await unlinkIfExists(paths.manifestNext);
        recovery = 'discarded-format-upgrade';
      }
      const store = new VolumeStore(paths, opts.hooks ?? {}, recovery);
      if (recovery === 'none' && (await store.recover())) store.recovery = 'applied';
      store.manifest = await loadManifest(paths);
      if (store.manifest && !(await store.imageMatchesStamp())) store.imageChanged = true;
      return store;
    } catch (err) {
      await releaseLock(paths);
      throw err;
    }
  }

  /** Finish a committed transfer (redo its log). Returns true if there was one. */
  async recover(): Promise<boolean> {
    if (!(await exists(this.paths.commit))) return false;
    const commit = await readJsonVersioned<CommitRecord>(this.paths.commit, 'commit record');
    await this.applyCommitted(commit);
    return true;
  }

  /**
   * Make a manifest for an image found without one (e.g. written by the original dosvob): hash it locally, once.
   */
  async adoptImage(blockSize: number, volume: { volumeId: string; volumeName: string }): Promise<Manifest | undefined> {
    let size: number;
    try {
      size = (await stat(this.paths.image)).size;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
    const hashes = await hashImage(this.paths.image, size, blockSize);
    const manifest: Manifest = {
      header: {
        formatVersion: STORE_FORMAT_VERSION,
        hashAlgorithm: 'sha256',
        volumeId: volume.volumeId,
        volumeName: volume.volumeName,
        sizeBytes: size,
        blockSize,
        blockCount: blockCountFor(size, blockSize),
        snapshotId: null,
        snapshotCreatedAt: null,
        committedAt: new Date().toISOString(),
        digest: digestOf(hashes),
        zeroBlocks: countZeroBlocks(hashes, size, blockSize),
        origin: 'adopted',
      },
      hashes,
    };
    await writeManifest(this.paths.manifest, manifest);
    await this.writeStamp();
    this.manifest = manifest;
    this.imageChanged = false;
    return manifest;
  }

  /**
   * Commit a verified transfer: after this returns the new image and manifest are in place. If the process dies
   * inside, the next `open()` finishes the job.
   */
  async commit(
    plan: StagingPlan,
    next: Manifest,
    flush: () => Promise<void>,
    applyBytesUpperBound: number,
    touchesImage: boolean,
  ): Promise<void> {
    try {
      await flush();
      await ensureFreeSpace(this.paths.backupsDir, plan.mode === 'inline' ? applyBytesUpperBound : 0);
      await writeManifest(this.paths.manifestNext, next);
      const commit: CommitRecord = {
        formatVersion: STORE_FORMAT_VERSION,
        stagingId: plan.stagingId,
        mode: plan.mode,
        sizeBytes: plan.sizeBytes,
        blockSize: plan.blockSize,
        stripes: plan.stripes.length,
        touchesImage: touchesImage || this.manifest?.header.sizeBytes !== plan.sizeBytes,
        digest: next.header.digest,
      };
      await writeFileAtomic(this.paths.commit, JSON.stringify(commit));
    } catch (err) {
      rethrowDiskFull(err, 'the staging area');
    }
    await this.applyCommitted(await readJsonVersioned<CommitRecord>(this.paths.commit, 'commit record'));
    this.manifest = next;
  }

  /** Remove an in-flight (uncommitted) transfer. */
  async discardStaging(): Promise<void> {
    await rm(this.paths.staging, { recursive: true, force: true });
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await releaseLock(this.paths);
  }

  /** Remember the image's size and mtime so that a change made outside dosvob (e.g. a rw loop mount) is noticed. */
  async writeStamp(): Promise<void> {
    const st = await stat(this.paths.image);
    await writeFileAtomic(this.paths.stamp, JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs }));
  }

  private async imageMatchesStamp(): Promise<boolean> {
    try {
      const stamp = JSON.parse(await readFile(this.paths.stamp, 'utf8')) as { size: number; mtimeMs: number };
      const st = await stat(this.paths.image);
      return st.size === stamp.size && st.mtimeMs === stamp.mtimeMs;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  private async applyCommitted(commit: CommitRecord): Promise<void> {
    const { paths } = this;
    if (commit.mode === 'direct') {
      if (await exists(paths.incoming)) {
        const fh = await open(paths.incoming, 'r+');
        try {
          await fh.truncate(commit.sizeBytes);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(paths.incoming, paths.image);
        await fsyncDir(paths.backupsDir);
      }
      await this.writeStamp();
    } else if (commit.touchesImage) {
      const fh = await open(paths.image, 'r+');
      try {
        await fh.truncate(commit.sizeBytes);
        const holes: HoleRange[] = [];
        let applied = 0;
        for (let k = 0; k < commit.stripes; k++) {
          const log = await open(paths.stripeLog(k), 'r');
          try {
            let buf = Buffer.alloc(0);
            await scanStripeLog(
              paths.stripeLog(k),
              { stagingId: commit.stagingId, stripe: k, mode: 'inline' },
              async (rec) => {
                if (rec.type === 'D') {
                  if (buf.length < rec.length) buf = Buffer.allocUnsafe(rec.length);
                  const data = await readFully(log, rec.length, rec.dataOffset, buf);
                  if (data.length !== rec.length) throw new Error(`redo log ${paths.stripeLog(k)} is short`);
                  await writeFully(fh, data, rec.index * commit.blockSize);
                } else if (rec.type === 'Z') {
                  const offset = rec.first * commit.blockSize;
                  const end = Math.min(commit.sizeBytes, (rec.first + rec.count) * commit.blockSize);
                  holes.push({ offset, length: end - offset });
                } else return;
                applied++;
                await this.hooks.onApplyRecord?.(applied);
              },
              true,
            );
          } finally {
            await log.close();
          }
        }
        await punchHoles(paths.image, fh, holes);
        await fh.sync();
        await this.writeStamp();
      } catch (err) {
        rethrowDiskFull(
          err,
          `the image ${paths.image} (the update is committed and will be finished at the next start once space is free)`,
        );
      } finally {
        await fh.close();
      }
    }
    if (await exists(paths.manifestNext)) {
      await rename(paths.manifestNext, paths.manifest);
      await fsyncDir(paths.dataDir);
    }
    await rm(paths.staging, { recursive: true, force: true });
    await fsyncDir(paths.dataDir);
  }
}

async function loadManifest(paths: StorePaths): Promise<Manifest | undefined> {
  try {
    return await readManifest(paths.manifest);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** A file in the store written by another format version, if any. */
async function findForeignFormat(
  paths: StorePaths,
): Promise<{ path: string; version: number | undefined } | undefined> {
  for (const p of [paths.manifest, paths.manifestNext]) {
    let v: number | undefined;
    try {
      v = await peekManifestVersion(p);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      throw err;
    }
    if (v !== STORE_FORMAT_VERSION) return { path: p, version: v };
  }
  for (const p of [paths.commit, paths.plan]) {
    try {
      const parsed = JSON.parse(await readFile(p, 'utf8')) as { formatVersion?: unknown };
      if (parsed.formatVersion !== STORE_FORMAT_VERSION) {
        return { path: p, version: typeof parsed.formatVersion === 'number' ? parsed.formatVersion : undefined };
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      if (err instanceof SyntaxError) return { path: p, version: undefined };
      throw err;
    }
  }
  return undefined;
}

async function ensureFreeSpace(dir: string, bytes: number): Promise<void> {
  if (bytes <= 0) return;
  const s = await statfs(dir);
  const free = s.bavail * s.bsize;
  const margin = 16 << 20;
  if (free < bytes + margin) {
    throw new DiskFullError(
      `not enough free space in ${dir} to apply the update (${bytes} bytes needed, ${free} free); the previous image is intact`,
    );
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

async function acquireLock(paths: StorePaths): Promise<void> {
  if (locksHeld.has(paths.lock)) {
    throw new VolumeBusyError(`another transfer of ${paths.volumeName} is running in this process`);
  }
  locksHeld.add(paths.lock);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(paths.lock, `${process.pid}\n`, { flag: 'wx' });
        return;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
      }
      const pid = Number.parseInt((await readFile(paths.lock, 'utf8').catch(() => '')).trim(), 10);
      if (Number.isFinite(pid) && pid !== process.pid && pidAlive(pid)) {
        throw new VolumeBusyError(`${paths.volumeName} is locked by running process ${pid} (${paths.lock})`);
      }
      await unlinkIfExists(paths.lock); // stale: its process is gone (or it is ours from an earlier crash)
    }
    throw new VolumeBusyError(`could not lock ${paths.lock}`);
  } catch (err) {
    locksHeld.delete(paths.lock);
    throw err;
  }
}

async function releaseLock(paths: StorePaths): Promise<void> {
  locksHeld.delete(paths.lock);
  await unlinkIfExists(paths.lock);
}

/** SHA-256 per block of a local file (used to adopt an image and to verify one). */
export async function hashImage(
  path: string,
  sizeBytes: number,
  blockSize: number,
  options: { onBlock?: (blocksDone: number) => void; signal?: AbortSignal } = {},
): Promise<Buffer> {
  const n = blockCountFor(sizeBytes, blockSize);
  const hashes = Buffer.alloc(n * HASH_LEN);
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(blockSize);
    for (let i = 0; i < n; i++) {
      options.signal?.throwIfAborted();
      const len = blockLength(i, sizeBytes, blockSize);
      const data = await readFully(fh, len, i * blockSize, buf);
      // Past the file's end (an image shorter than the volume) reads as zeros.
      const full = data.length === len ? data : Buffer.concat([data, Buffer.alloc(len - data.length)]);
      createHash('sha256')
        .update(full)
        .digest()
        .copy(hashes, i * HASH_LEN);
      options.onBlock?.(i + 1);
    }
  } finally {
    await fh.close();
  }
  return hashes;
}

export interface VerifyResult {
  ok: boolean;
  manifest: Manifest;
  badBlocks: number[];
  sizeMatches: boolean;
  /** The manifest's digest matches its own block hashes (the manifest itself is intact). */
  manifestIntact: boolean;
}

export interface VerifyOptions {
  onBlock?: (blocksDone: number) => void;
  signal?: AbortSignal;
}

/** Check an image against its manifest (reads the whole image). */
export async function verifyImage(
  backupsDir: string,
  volumeName: string,
  manifest?: Manifest,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const paths = storePaths(backupsDir, volumeName);
  const m = manifest ?? (await readManifest(paths.manifest));
  const { sizeBytes, blockSize, blockCount } = m.header;
  const size = (await stat(paths.image)).size;
  const hashes = await hashImage(paths.image, sizeBytes, blockSize, options);
  const badBlocks: number[] = [];
  for (let i = 0; i < blockCount; i++) if (!hashAt(hashes, i).equals(hashAt(m.hashes, i))) badBlocks.push(i);
  const manifestIntact = digestOf(m.hashes) === m.header.digest;
  const sizeMatches = size === sizeBytes;
  return {
    ok: badBlocks.length === 0 && sizeMatches && manifestIntact,
    manifest: m,
    badBlocks,
    sizeMatches,
    manifestIntact,
  };
}

/** Names of volumes with a store under backupsDir. */
export async function listStores(backupsDir: string): Promise<string[]> {
  try {
    return (await readdir(`${backupsDir}/.dosvob`, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
}

export { zeroHash, storePaths };
