// The local store of one volume: the image, its manifest, and the commit/apply/recovery protocol that keeps a
// complete image at every instant.
//
// Commit protocol of a transfer (staging/ already holds verified stripe logs):
//   1. fsync the logs (and incoming.img on a first sync), check free space for the apply and the blocks to keep
//   2. keep the previous version restorable: every block of the image the update overwrites (its hash changes) is
//      saved to the chunk store, fsynced, unless a chunk with its hash is there already (chunks.ts; under the chunk
//      store's shared lock until COMMIT is durable, so a garbage collection cannot take one meanwhile)
//   3. write manifest.next (atomically, it names the new version), then staging/COMMIT (atomically): from here on the
//      transfer is decided
//   4. apply: 'inline' mode replays the logs onto the image (pwrite data, punch holes for zeroed blocks, set size),
//      fsync; 'direct' mode (first sync) renames incoming.img over the image path
//   5. write versions/<versionId> (a copy of manifest.next), rename manifest.next -> manifest; remove staging/COMMIT and
//      fsync staging/; remove the rest of staging/
// Every step of 4 and 5 is idempotent, so a crash anywhere after 3 is finished by `recover()` at the next start;
// a crash before 3 leaves the old image, manifest and versions untouched (and at most unreferenced chunks or temp files
// in the chunk store). Since 2 precedes the first write to the image, every kept version stays readable at any instant. COMMIT goes before the logs so that it is never found
// without them; a COMMIT found with manifest.next already renamed (the manifest is the committed one) needs only the
// clean-up.
//
// Each data block of a redo log is checked against its SHA-256 as it is applied: one that fails is not written, keeps
// its previous content, and the manifest records that content's hash (and the block as stale), so image and manifest
// agree and the next sync fetches it. A log that cannot be read at all drops the update: untouched by this process,
// the previous manifest stays in force; after a crash mid-apply nothing says which blocks were written, so the image
// is re-hashed at the next sync (its stamp is removed).
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm, stat, statfs, readFile, type FileHandle } from 'node:fs/promises';
import {
  DiskFullError,
  ManifestDamagedError,
  RedoLogDamagedError,
  StoreFormatError,
  isErrno,
  rethrowDiskFull,
} from './errors.js';
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
import { LEGACY_FORMAT_VERSION, STORE_FORMAT_VERSION, storePaths, type StorePaths } from './layout.js';
import { StoreLock } from './lock.js';
import { ChunkSaver, lockChunkStoreShared, saveChunks, type BlockToSave, type SaveReport } from './chunks.js';
import { listStoreKeys, readIdentity } from './identity.js';
import { newVersionId, versionPath, writeVersionFile } from './versions.js';
import {
  HASH_LEN,
  blockCountFor,
  blockLength,
  countZeroBlocks,
  decodeManifest,
  digestOf,
  encodeManifest,
  hashAt,
  peekManifestVersion,
  readManifest,
  writeManifest,
  zeroHash,
  type Manifest,
} from './manifest.js';
import { readJsonVersioned, scanStripeLog, type CommitRecord, type StagingPlan } from './staging.js';

/** The durable steps that finish a commit, in order (see the top of this file). */
export type ApplyStep =
  | 'saving-chunks'
  | 'chunks-saved'
  | 'committed'
  | 'image-written'
  | 'version-written'
  | 'manifest-advanced'
  | 'commit-removed';

export interface StoreHooks {
  /** Called after each record applied to the image (tests use it to crash mid-apply). */
  onApplyRecord?: (recordsApplied: number) => void | Promise<void>;
  /** Called after each chunk written (not yet fsynced or renamed) while keeping overwritten blocks. */
  onChunkWritten?: (chunksWritten: number) => void | Promise<void>;
  /** false: keep overwritten blocks only at the commit, not also in the background while streaming (tests). */
  copyEarly?: boolean;
  /** Called after each step of finishing a commit (tests use it to crash between them). */
  onApplyStep?: (step: ApplyStep) => void | Promise<void>;
}

export interface OpenStoreOptions {
  backupsDir: string;
  volumeName: string;
  /** Consent to discard dosvob data written by another store format version (the image itself is kept). */
  allowFormatUpgrade?: boolean;
  /**
   * Keep the overwritten blocks and a manifest per version (default true). false: only the image and its manifest
   * are kept up to date, and older versions lose the blocks a commit overwrites (for measuring what versions cost).
   */
  keepVersions?: boolean;
  hooks?: StoreHooks;
}

/**
 * What opening the store did about an interrupted update: nothing to do, finished it, dropped dosvob's data of
 * another format, or dropped an update whose redo log could not be read (the image is re-hashed at the next sync).
 */
export type RecoveryOutcome = 'none' | 'applied' | 'discarded-format-upgrade' | 'abandoned';

/** Finishing a commit of the previous store format (while upgrading): its logs and manifests carry that format. */
interface FinishMode {
  fresh: boolean;
  legacyFormat?: number;
}

interface FinishOutcome {
  /** Blocks whose redo-log data failed its check: not written, recorded as stale in the manifest. */
  stale: number[];
  /** Why the update was dropped instead of applied. */
  abandoned?: string;
}

export class VolumeStore {
  manifest: Manifest | undefined;
  /** The image was changed outside dosvob since the last commit (size/mtime differ): its manifest can't be trusted. */
  imageChanged = false;
  /**
   * The manifest failed its own checks (why, in words): `manifest` is then undefined and a sync re-hashes the image,
   * as for one found without a manifest.
   */
  manifestDamage: string | undefined;
  /** Why an interrupted update was abandoned (recovery 'abandoned'). */
  recoveryDetail: string | undefined;
  /** The store was converted from this older format when it was opened (its manifest became its first version). */
  upgradedFrom: number | undefined;
  /** The region identity.json records for this store, if any (a version's region when the sync does not say). */
  region: string | null = null;
  /** What the last commit did to keep the previous version restorable. */
  lastSave: SaveReport | undefined;
  private saver: ChunkSaver | undefined;
  private released = false;

  private constructor(
    readonly paths: StorePaths,
    private readonly lock: StoreLock,
    private readonly hooks: StoreHooks,
    public recovery: RecoveryOutcome,
    private readonly keepVersions = true,
  ) {}

  /** Lock the volume's store, finish any committed transfer, check the format, load the manifest. */
  static async open(opts: OpenStoreOptions): Promise<VolumeStore> {
    const paths = storePaths(opts.backupsDir, opts.volumeName);
    await mkdir(paths.dataDir, { recursive: true });
    const lock = await StoreLock.acquire(paths.lock, paths.volumeName);
    try {
      let recovery: RecoveryOutcome = 'none';
      const formatProblem = await findForeignFormat(paths);
      let legacy = false;
      if (formatProblem?.version === LEGACY_FORMAT_VERSION) legacy = true;
      else if (formatProblem) {
        if (!opts.allowFormatUpgrade) {
          const newer = formatProblem.version !== undefined && formatProblem.version > STORE_FORMAT_VERSION;
          throw new StoreFormatError(
            `${formatProblem.path} was written by dosvob store format ${formatProblem.version ?? 'unknown'}, ` +
              `this dosvob uses format ${STORE_FORMAT_VERSION}` +
              (newer ? ' (a newer dosvob wrote it: upgrade dosvob)' : '') +
              `. Refusing to touch ${paths.dataDir} or ${paths.image}. ` +
              `Rerun with allowFormatUpgrade to convert (the image is kept and re-hashed locally; ` +
              `dosvob's data beside it, including its kept versions, is dropped).`,
            formatProblem.version,
          );
        }
        // Consent given: drop dosvob's own data; the image stays and is adopted (re-hashed) below as found.
        await rm(paths.staging, { recursive: true, force: true });
        await rm(paths.versions, { recursive: true, force: true });
        await unlinkIfExists(paths.manifest);
        await unlinkIfExists(paths.manifestNext);
        recovery = 'discarded-format-upgrade';
      }
      const store = new VolumeStore(paths, lock, opts.hooks ?? {}, recovery, opts.keepVersions ?? true);
      store.region = (await readIdentity(paths.backupsDir, paths.volumeName).catch(() => undefined))?.region ?? null;
      if (legacy) store.recovery = await store.upgradeLegacy();
      else if (recovery === 'none') store.recovery = await store.recover();
      try {
        store.manifest = await loadManifest(paths);
      } catch (err) {
        if (!(err instanceof ManifestDamagedError)) throw err;
        store.manifestDamage = err.message;
      }
      if (store.manifest && !(await store.imageMatchesStamp())) store.imageChanged = true;
      return store;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Finish a committed transfer (redo its log), if there is one. */
  async recover(): Promise<RecoveryOutcome> {
    if (!(await exists(this.paths.commit))) return 'none';
    const commit = await readJsonVersioned<CommitRecord>(this.paths.commit, 'commit record');
    const outcome = await this.finishCommitted(commit, { fresh: false });
    this.recoveryDetail = outcome.abandoned;
    return outcome.abandoned === undefined ? 'applied' : 'abandoned';
  }

  /**
   * Convert a store of format 1 in place: finish (or drop, if uncommitted) its interrupted update with that format's
   * rules, then its manifest becomes its first version. Every step is idempotent (the version id is derived from the
   * manifest), so a crash inside is finished by the next open.
   */
  private async upgradeLegacy(): Promise<RecoveryOutcome> {
    const { paths } = this;
    let outcome: RecoveryOutcome = 'none';
    if (await exists(paths.commit)) {
      const commit = JSON.parse(await readFile(paths.commit, 'utf8')) as CommitRecord;
      if (commit.formatVersion === LEGACY_FORMAT_VERSION) {
        const done = await this.finishCommitted(commit, { fresh: false, legacyFormat: LEGACY_FORMAT_VERSION });
        this.recoveryDetail = done.abandoned;
        outcome = done.abandoned === undefined ? 'applied' : 'abandoned';
      } else outcome = await this.recover();
    } else if (await exists(paths.staging)) {
      // Uncommitted: the transfer starts over (its plan and logs are of the old format).
      await rm(paths.staging, { recursive: true, force: true });
      await fsyncDir(paths.dataDir);
    }
    if (!(await exists(paths.commit))) await unlinkIfExists(paths.manifestNext);
    let old: Manifest;
    try {
      old = await readManifest(paths.manifest, [LEGACY_FORMAT_VERSION, STORE_FORMAT_VERSION]);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return outcome;
      if (!(err instanceof ManifestDamagedError)) throw err;
      // Nothing it says can be used: as for a damaged manifest of this format, the image is re-hashed (adopted).
      await unlinkIfExists(paths.manifest);
      await fsyncDir(paths.dataDir);
      return outcome;
    }
    if (old.header.formatVersion === STORE_FORMAT_VERSION) return outcome;
    const at = new Date(old.header.committedAt);
    const versionId = newVersionId(Number.isNaN(at.getTime()) ? new Date() : at, old.header.digest.slice(0, 6));
    const upgraded: Manifest = {
      header: {
        ...old.header,
        formatVersion: STORE_FORMAT_VERSION,
        versionId,
        region: this.region,
        runId: null,
        blocksChanged: null,
        upgradedFrom: LEGACY_FORMAT_VERSION,
      },
      hashes: old.hashes,
    };
    const bytes = encodeManifest(upgraded);
    await writeVersionFile(paths.backupsDir, paths.volumeName, versionId, bytes);
    await writeFileAtomic(paths.manifest, bytes);
    this.upgradedFrom = LEGACY_FORMAT_VERSION;
    return outcome;
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
    const committedAt = this.nextVersionTime();
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
        committedAt: committedAt.toISOString(),
        digest: digestOf(hashes),
        zeroBlocks: countZeroBlocks(hashes, size, blockSize),
        origin: 'adopted',
        versionId: newVersionId(committedAt),
        region: this.region,
        runId: null,
        blocksChanged: null,
      },
      hashes,
    };
    // The image as found is a point in time like any other: a version, whose blocks the next sync keeps as usual.
    const bytes = encodeManifest(manifest);
    await writeVersionFile(this.paths.backupsDir, this.paths.volumeName, manifest.header.versionId!, bytes);
    await writeFileAtomic(this.paths.manifest, bytes);
    await this.writeStamp();
    this.manifest = manifest;
    this.imageChanged = false;
    this.manifestDamage = undefined;
    return manifest;
  }

  /**
   * Commit a verified transfer: after this returns the new image and manifest are in place. If the process dies
   * inside, the next `open()` finishes the job. Throws RedoLogDamagedError, with image and manifest consistent, when
   * the staged data failed its check on the way to the image.
   */
  async commit(
    plan: StagingPlan,
    next: Manifest,
    flush: () => Promise<void>,
    applyBytesUpperBound: number,
    touchesImage: boolean,
  ): Promise<void> {
    let commit: CommitRecord;
    this.stampVersion(next);
    try {
      await flush();
      // The background copies are complete before the pass below uses them (and nothing reads the image later).
      await this.saver?.drain();
      const keep = this.keepVersions && (await exists(this.paths.image)) ? this.overwrittenBlocks(next) : [];
      const keepBytes = keep.reduce((n, b) => n + (this.saver?.has(b.hash.toString('hex')) ? 0 : b.length), 0);
      await ensureFreeSpace(this.paths.backupsDir, (plan.mode === 'inline' ? applyBytesUpperBound : 0) + keepBytes);
      // Held until COMMIT is durable: a sweep (GC) cannot remove a chunk between our check for it and the commit.
      const chunkLock = await lockChunkStoreShared(this.paths.backupsDir);
      try {
        await this.hooks.onApplyStep?.('saving-chunks');
        this.lastSave = await this.keepBlocks(keep);
        await this.saver?.close();
        await this.hooks.onApplyStep?.('chunks-saved');
        await writeManifest(this.paths.manifestNext, next);
        commit = {
          formatVersion: STORE_FORMAT_VERSION,
          stagingId: plan.stagingId,
          mode: plan.mode,
          sizeBytes: plan.sizeBytes,
          blockSize: plan.blockSize,
          stripes: plan.stripes.length,
          touchesImage: touchesImage || this.manifest?.header.sizeBytes !== plan.sizeBytes,
          digest: next.header.digest,
          versionId: next.header.versionId,
        };
        await writeFileAtomic(this.paths.commit, JSON.stringify(commit));
      } finally {
        await chunkLock.release();
      }
    } catch (err) {
      rethrowDiskFull(err, 'the staging area');
    }
    await this.hooks.onApplyStep?.('committed');
    const outcome = await this.finishCommitted(commit, { fresh: true });
    if (outcome.abandoned !== undefined) {
      throw new RedoLogDamagedError(
        `the update of ${this.paths.volumeName} was dropped before it touched the image: ${outcome.abandoned}; ` +
          `the previous image and manifest are intact`,
        [],
      );
    }
    if (outcome.stale.length > 0) {
      this.manifest = await readManifest(this.paths.manifest);
      const first = outcome.stale.slice(0, 10).join(', ');
      throw new RedoLogDamagedError(
        `${outcome.stale.length} block(s) of the update of ${this.paths.volumeName} failed their SHA-256 in the ` +
          `redo log and were not written (block ${first}${outcome.stale.length > 10 ? ', ...' : ''}; block i is ` +
          `bytes [i * ${commit.blockSize}, (i + 1) * ${commit.blockSize})): they keep their previous content, the ` +
          `manifest says so, and the next sync fetches them again`,
        outcome.stale,
      );
    }
    this.manifest = next;
  }

  /** Versions are ordered by time: never at or before the version it follows, whatever the clock did. */
  private nextVersionTime(): Date {
    const now = Date.now();
    const prev = this.manifest ? Date.parse(this.manifest.header.committedAt) : NaN;
    return new Date(Number.isNaN(prev) || now > prev ? now : prev + 1);
  }

  /** Give `next` its version's identity: id, time after the previous one, region, blocks changed. */
  private stampVersion(next: Manifest): void {
    const h = next.header;
    const at = this.nextVersionTime();
    const given = Date.parse(h.committedAt);
    const committedAt = !Number.isNaN(given) && given > at.getTime() ? new Date(given) : at;
    h.committedAt = committedAt.toISOString();
    h.versionId = newVersionId(committedAt);
    h.region = h.region ?? this.region;
    h.runId = h.runId ?? null;
    h.blocksChanged = this.manifest ? changedBlocks(this.manifest, next) : h.blockCount - h.zeroBlocks;
  }

  /** The image's blocks the update replaces with other content (or drops, if it shrinks), except all-zero ones. */
  private overwrittenBlocks(next: Manifest): BlockToSave[] {
    const base = this.manifest;
    if (!base) return [];
    const { sizeBytes, blockSize, blockCount } = base.header;
    const sameGeometry = next.header.blockSize === blockSize;
    const out: BlockToSave[] = [];
    for (let i = 0; i < blockCount; i++) {
      const old = hashAt(base.hashes, i);
      const len = blockLength(i, sizeBytes, blockSize);
      if (old.equals(zeroHash(len))) continue;
      if (sameGeometry && i < next.header.blockCount && hashAt(next.hashes, i).equals(old)) continue;
      out.push({ index: i, offset: i * blockSize, length: len, hash: Buffer.from(old) });
    }
    return out;
  }

  /**
   * The transfer learnt that blocks [first, first + count) will change: start keeping their current content now,
   * while the stream goes on, instead of all at the commit (which still checks, and saves whatever this missed).
   */
  willOverwrite(first: number, count = 1): void {
    const base = this.manifest;
    if (!this.keepVersions || !base || this.released || this.hooks.copyEarly === false) return;
    const { sizeBytes, blockSize, blockCount } = base.header;
    for (let i = first; i < Math.min(first + count, blockCount); i++) {
      const old = hashAt(base.hashes, i);
      const length = blockLength(i, sizeBytes, blockSize);
      if (old.equals(zeroHash(length))) continue;
      this.saver ??= new ChunkSaver(this.paths.backupsDir, this.paths.image, this.hooks.onChunkWritten);
      this.saver.add({ index: i, offset: i * blockSize, length, hash: Buffer.from(old) });
    }
  }

  private async keepBlocks(blocks: BlockToSave[]): Promise<SaveReport> {
    if (blocks.length === 0) return { written: 0, bytesWritten: 0, reused: 0, mismatched: [] };
    const fh = await open(this.paths.image, 'r');
    try {
      return await saveChunks(this.paths.backupsDir, fh, blocks, {
        take: this.saver && ((hex) => this.saver?.take(hex)),
        onWritten: this.hooks.onChunkWritten,
      });
    } finally {
      await fh.close();
    }
  }

  /** Remove an in-flight (uncommitted) transfer. */
  async discardStaging(): Promise<void> {
    await rm(this.paths.staging, { recursive: true, force: true });
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.saver?.close();
    await this.lock.release();
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

  /**
   * Steps 3 and 4 of the commit. `fresh`: COMMIT was written by this call's caller just now, so the image is known
   * to be untouched until this writes to it.
   */
  private async finishCommitted(commit: CommitRecord, mode: FinishMode): Promise<FinishOutcome> {
    const { paths } = this;
    const { fresh, legacyFormat } = mode;
    if (!(await exists(paths.manifestNext))) {
      // manifest.next is written before COMMIT and goes only by its rename: the update is in place.
      if (await this.manifestIsFrom(commit)) {
        if (legacyFormat === undefined) await this.ensureVersionOfManifest();
        await this.dropStaging();
        return { stale: [] };
      }
      return this.abandon('its new manifest is gone', fresh);
    }
    let stale: number[] = [];
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
      } else if (!(await exists(paths.image))) {
        return this.abandon('the image it was writing is gone', fresh);
      }
      await this.writeStamp();
    } else if (commit.touchesImage) {
      if (!(await exists(paths.image))) return this.abandon(`the image ${paths.image} it updates is gone`, fresh);
      // Read every log's structure before the first write: a log that cannot be replayed must not be half replayed.
      const unreadable = await this.unreadableLog(commit, legacyFormat);
      if (unreadable !== undefined) return this.abandon(unreadable, fresh);
      stale = await this.replayLogs(commit, legacyFormat);
    }
    await this.hooks.onApplyStep?.('image-written');
    if (stale.length > 0) await this.recordStale(commit, stale, legacyFormat);
    if (legacyFormat === undefined && this.keepVersions) {
      await this.writeVersionOf(await readFile(paths.manifestNext), commit.versionId);
      await this.hooks.onApplyStep?.('version-written');
    }
    await rename(paths.manifestNext, paths.manifest);
    await fsyncDir(paths.dataDir);
    await this.hooks.onApplyStep?.('manifest-advanced');
    await this.dropStaging();
    return { stale };
  }

  /** Keep `bytes` (a manifest about to become current) as its version; a damaged one is left to be reported. */
  private async writeVersionOf(bytes: Buffer, versionId: string | undefined): Promise<void> {
    let id = versionId;
    try {
      id ??= decodeManifest(bytes, this.paths.manifestNext).header.versionId;
    } catch (err) {
      if (err instanceof ManifestDamagedError) return;
      throw err;
    }
    if (id === undefined) return;
    await writeVersionFile(this.paths.backupsDir, this.paths.volumeName, id, bytes);
  }

  /** After a crash between the manifest's rename and the clean-up: its version file was written before the rename. */
  private async ensureVersionOfManifest(): Promise<void> {
    const bytes = await readFile(this.paths.manifest);
    let id: string | undefined;
    try {
      id = decodeManifest(bytes, this.paths.manifest).header.versionId;
    } catch (err) {
      if (err instanceof ManifestDamagedError) return;
      throw err;
    }
    if (id !== undefined && !(await exists(versionPath(this.paths.backupsDir, this.paths.volumeName, id)))) {
      await this.writeVersionOf(bytes, id);
    }
  }

  /** The manifest in place is the one this commit made (then only the clean-up was left to do). */
  private async manifestIsFrom(commit: CommitRecord): Promise<boolean> {
    try {
      const m = await readManifest(this.paths.manifest, [LEGACY_FORMAT_VERSION, STORE_FORMAT_VERSION]);
      return m.header.digest === commit.digest || m.header.staleBlocks?.stagingId === commit.stagingId;
    } catch (err) {
      if (isErrno(err, 'ENOENT') || err instanceof ManifestDamagedError) return false;
      throw err;
    }
  }

  /** Drop a committed update that cannot be applied; the image is re-hashed next time unless known untouched. */
  private async abandon(why: string, imageUntouched: boolean): Promise<FinishOutcome> {
    const { paths } = this;
    if (!imageUntouched) {
      // Some blocks may have been written: without the stamp the next sync re-hashes the image (imageChanged).
      await unlinkIfExists(paths.stamp);
      await fsyncDir(paths.dataDir);
    }
    await unlinkIfExists(paths.manifestNext);
    await fsyncDir(paths.dataDir);
    await this.dropStaging();
    return { stale: [], abandoned: why };
  }

  /** COMMIT first, and durably, so that a COMMIT is never found without the logs it refers to; then the rest. */
  private async dropStaging(): Promise<void> {
    const { paths } = this;
    if (await exists(paths.commit)) {
      await unlinkIfExists(paths.commit);
      await fsyncDir(paths.staging);
    }
    await this.hooks.onApplyStep?.('commit-removed');
    await rm(paths.staging, { recursive: true, force: true });
    await fsyncDir(paths.dataDir);
  }

  /** Why a stripe log of the commit cannot be replayed, if it cannot (missing, torn, damaged, not this staging's). */
  private async unreadableLog(commit: CommitRecord, formatVersion?: number): Promise<string | undefined> {
    for (let k = 0; k < commit.stripes; k++) {
      const path = this.paths.stripeLog(k);
      try {
        await scanStripeLog(
          path,
          { stagingId: commit.stagingId, stripe: k, mode: 'inline', formatVersion },
          () => undefined,
          true,
        );
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return `its redo log ${path} is missing`;
        // Any other system error (EIO, EACCES, ...) may pass: keep everything and let a later attempt retry.
        if (typeof (err as NodeJS.ErrnoException).code === 'string') throw err;
        return `its redo log cannot be read (${err instanceof Error ? err.message : String(err)})`;
      }
    }
    return undefined;
  }

  /** Replay the logs onto the image; returns the data blocks that failed their SHA-256 (left as they were). */
  private async replayLogs(commit: CommitRecord, formatVersion?: number): Promise<number[]> {
    const { paths } = this;
    const blockCount = blockCountFor(commit.sizeBytes, commit.blockSize);
    const stale = new Set<number>();
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
            { stagingId: commit.stagingId, stripe: k, mode: 'inline', formatVersion },
            async (rec) => {
              if (rec.type === 'D') {
                if (rec.index >= blockCount) return; // no such block (the CRC makes this all but impossible)
                if (buf.length < rec.length) buf = Buffer.allocUnsafe(rec.length);
                const data = await readFully(log, rec.length, rec.dataOffset, buf);
                const intact =
                  data.length === blockLength(rec.index, commit.sizeBytes, commit.blockSize) &&
                  createHash('sha256').update(data).digest().equals(rec.hash);
                if (!intact) {
                  stale.add(rec.index);
                  return;
                }
                await writeFully(fh, data, rec.index * commit.blockSize);
                stale.delete(rec.index);
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
    return [...stale].sort((a, b) => a - b);
  }

  /**
   * Make manifest.next tell the truth about blocks that were not written: the hash of what they hold now (so image
   * and manifest agree, and a sync sees them differ from the volume), and a note that they are stale. Idempotent.
   */
  private async recordStale(commit: CommitRecord, stale: number[], formatVersion?: number): Promise<void> {
    const { paths } = this;
    let next: Manifest;
    try {
      next = await readManifest(paths.manifestNext, [formatVersion ?? STORE_FORMAT_VERSION]);
    } catch (err) {
      // Damaged too: it goes in as it is and is reported as damaged, which re-hashes the whole image next time.
      if (err instanceof ManifestDamagedError) return;
      throw err;
    }
    const { sizeBytes, blockSize } = next.header;
    const fh = await open(paths.image, 'r');
    try {
      for (const i of stale) (await hashBlock(fh, i, sizeBytes, blockSize)).copy(next.hashes, i * HASH_LEN);
    } finally {
      await fh.close();
    }
    next.header.digest = digestOf(next.hashes);
    next.header.zeroBlocks = countZeroBlocks(next.hashes, sizeBytes, blockSize);
    next.header.staleBlocks = { stagingId: commit.stagingId, count: stale.length, first: stale.slice(0, 16) };
    await writeManifest(paths.manifestNext, next);
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

/**
 * A file in the store written by another format version, if any: one of a format that cannot be upgraded in place
 * first; a format-1 file (upgradable) only if there is no such one.
 */
async function findForeignFormat(
  paths: StorePaths,
): Promise<{ path: string; version: number | undefined } | undefined> {
  const found = await foreignFormatFiles(paths);
  return found.find((f) => f.version !== LEGACY_FORMAT_VERSION) ?? found[0];
}

async function foreignFormatFiles(paths: StorePaths): Promise<{ path: string; version: number | undefined }[]> {
  const found: { path: string; version: number | undefined }[] = [];
  for (const p of [paths.manifest, paths.manifestNext]) {
    let v: number | undefined;
    try {
      v = await peekManifestVersion(p);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      throw err;
    }
    // Not a manifest at all (undefined) is damage, which reading it reports; another format has its own version.
    if (v !== undefined && v !== STORE_FORMAT_VERSION) found.push({ path: p, version: v });
  }
  for (const p of [paths.commit, paths.plan]) {
    try {
      const parsed = JSON.parse(await readFile(p, 'utf8')) as { formatVersion?: unknown };
      if (parsed.formatVersion !== STORE_FORMAT_VERSION) {
        found.push({ path: p, version: typeof parsed.formatVersion === 'number' ? parsed.formatVersion : undefined });
      }
    } catch (err) {
      if (isErrno(err, 'ENOENT')) continue;
      if (err instanceof SyntaxError) found.push({ path: p, version: undefined });
      else throw err;
    }
  }
  return found;
}

/** Blocks whose content differs between two manifests (added and removed blocks count). */
function changedBlocks(a: Manifest, b: Manifest): number {
  const n = Math.max(a.header.blockCount, b.header.blockCount);
  let changed = 0;
  for (let i = 0; i < n; i++) {
    if (i >= a.header.blockCount || i >= b.header.blockCount || !hashAt(a.hashes, i).equals(hashAt(b.hashes, i))) {
      changed++;
    }
  }
  return changed;
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
      (await hashBlock(fh, i, sizeBytes, blockSize, buf)).copy(hashes, i * HASH_LEN);
      options.onBlock?.(i + 1);
    }
  } finally {
    await fh.close();
  }
  return hashes;
}

async function hashBlock(
  fh: FileHandle,
  i: number,
  sizeBytes: number,
  blockSize: number,
  buf?: Buffer,
): Promise<Buffer> {
  const len = blockLength(i, sizeBytes, blockSize);
  const data = await readFully(fh, len, i * blockSize, buf);
  // Past the file's end (an image shorter than the volume) reads as zeros.
  const full = data.length === len ? data : Buffer.concat([data, Buffer.alloc(len - data.length)]);
  return createHash('sha256').update(full).digest();
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

/** Keys of the stores under backupsDir (dosvob's own dot directories, e.g. the chunk store, are not stores). */
export async function listStores(backupsDir: string): Promise<string[]> {
  return listStoreKeys(backupsDir);
}

export { zeroHash, storePaths };
