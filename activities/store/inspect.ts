// What the local backup store holds, volume by volume, and whether each image can be trusted for a restore.
//
// Opening a store is also what finishes an update that a crash interrupted while it was being written into the
// image: without this, only the next transfer of that volume would, and after a disaster there may never be one.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreFormatError, VolumeBusyError, isErrno } from './errors.js';
import { exists } from './fsutil.js';
import { storePaths, type StorePaths } from './layout.js';
import { VolumeStore, listStores, verifyImage } from './store.js';

export type ImageState =
  /** Image and manifest agree (as far as was checked). */
  | 'ok'
  /** A transfer holds the volume's lock right now. */
  | 'busy'
  /** The store was written by another dosvob format version; nothing was touched. */
  | 'foreign-format'
  /** An image without dosvob's manifest (e.g. from the original dosvob): adopted at its next sync. */
  | 'no-manifest'
  /** A manifest without its image: the next sync is a full one. */
  | 'missing-image'
  /** The image's size or mtime changed since its last sync (e.g. mounted read-write): re-hashed at the next sync. */
  | 'changed-outside'
  /** The manifest fails its own checks: nothing it says is used; the next sync re-hashes the image to replace it. */
  | 'corrupt-manifest'
  /** The last update could not write some blocks (their staged data was damaged): the next sync fetches them. */
  | 'incomplete'
  /** A `*.img` (or a store directory) whose name dosvob does not use for a volume: listed, never touched. */
  | 'unsupported-name'
  /** --verify found blocks whose content differs from the manifest. */
  | 'corrupt';

export interface ImageReport {
  volumeName: string;
  imagePath: string;
  state: ImageState;
  /** An update interrupted while it was written into the image was finished now. */
  finishedInterruptedUpdate: boolean;
  /** A transfer was interrupted before its commit: the next sync resumes it (the image is the previous one). */
  stagedTransfer: boolean;
  /** Bytes of the image file, and bytes it allocates on disk (it is sparse). */
  sizeBytes?: number;
  allocatedBytes?: number;
  blockSize?: number;
  snapshotId?: string | null;
  snapshotCreatedAt?: string | null;
  lastSyncAt?: string;
  digest?: string;
  verify?: VerifyOutcome;
  /** Why the state is not ok, in words. */
  detail?: string;
}

export interface VerifyOutcome {
  blocksChecked: number;
  badBlocks: number;
  /** The first few bad block indexes (block i covers bytes [i * blockSize, (i + 1) * blockSize)). */
  firstBadBlocks: number[];
  /** The manifest's own digest matches its block hashes (the manifest itself is intact). */
  manifestIntact: boolean;
}

export interface InspectOptions {
  verify?: boolean;
  /** Called as blocks are hashed during verification. */
  onProgress?: (p: { volumeName: string; blocksDone: number; blockCount: number }) => void;
  signal?: AbortSignal;
}

/** Every volume the store knows: those with dosvob data, and bare `<name>.img` files beside them (any name). */
async function volumeNames(backupsDir: string): Promise<string[]> {
  const names = new Set(await listStores(backupsDir));
  try {
    for (const entry of await readdir(backupsDir, { withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.img')) names.add(entry.name.slice(0, -'.img'.length));
    }
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
  return [...names].sort();
}

const NO_MANIFEST = 'not written by this dosvob (no manifest): the next sync hashes it once to adopt it';

export async function inspectImages(backupsDir: string, options: InspectOptions = {}): Promise<ImageReport[]> {
  const reports: ImageReport[] = [];
  for (const volumeName of await volumeNames(backupsDir)) {
    options.signal?.throwIfAborted();
    reports.push(await inspectOne(backupsDir, volumeName, options));
  }
  return reports;
}

async function inspectOne(backupsDir: string, volumeName: string, options: InspectOptions): Promise<ImageReport> {
  let paths: StorePaths;
  try {
    paths = storePaths(backupsDir, volumeName);
  } catch (err) {
    const report: ImageReport = {
      volumeName,
      imagePath: join(backupsDir, `${volumeName}.img`),
      state: 'unsupported-name',
      finishedInterruptedUpdate: false,
      stagedTransfer: false,
      detail: `${err instanceof Error ? err.message : String(err)}: not a backup dosvob makes, left alone`,
    };
    await describeImageFile(report);
    return report;
  }
  const report: ImageReport = {
    volumeName,
    imagePath: paths.image,
    state: 'ok',
    finishedInterruptedUpdate: false,
    stagedTransfer: false,
  };
  if (!(await exists(paths.dataDir))) {
    // A bare image: report it without creating dosvob data beside it.
    await describeImageFile(report);
    report.state = 'no-manifest';
    report.detail = NO_MANIFEST;
    return report;
  }
  let store: VolumeStore;
  try {
    store = await VolumeStore.open({ backupsDir, volumeName });
  } catch (err) {
    if (err instanceof VolumeBusyError || err instanceof StoreFormatError) {
      await describeImageFile(report);
      report.state = err instanceof VolumeBusyError ? 'busy' : 'foreign-format';
      report.detail = err.message;
      return report;
    }
    throw err;
  }
  try {
    report.finishedInterruptedUpdate = store.recovery === 'applied';
    report.stagedTransfer = await exists(paths.plan);
    const imageFound = await describeImageFile(report);
    const manifest = store.manifest;
    if (store.manifestDamage !== undefined) {
      report.state = 'corrupt-manifest';
      report.detail = imageFound
        ? `${store.manifestDamage}: the next sync re-hashes the image and writes a new one`
        : `${store.manifestDamage}, and there is no image: the next sync is a full one`;
      return report;
    }
    if (!manifest) {
      report.state = imageFound ? 'no-manifest' : 'missing-image';
      report.detail = imageFound ? NO_MANIFEST : 'no image and no manifest yet';
      return report;
    }
    const h = manifest.header;
    Object.assign(report, {
      blockSize: h.blockSize,
      snapshotId: h.snapshotId,
      snapshotCreatedAt: h.snapshotCreatedAt,
      lastSyncAt: h.committedAt,
      digest: h.digest,
    });
    if (!imageFound) {
      report.state = 'missing-image';
      report.detail = `${paths.image} is missing: the next sync is a full one`;
      return report;
    }
    if (store.imageChanged) {
      report.state = 'changed-outside';
      report.detail =
        store.recovery === 'abandoned'
          ? `an interrupted update could not be finished (${store.recoveryDetail ?? 'unknown'}): the next sync re-hashes the image`
          : 'the image changed since its last sync (size or time): the next sync re-hashes it';
    } else if (h.staleBlocks) {
      report.state = 'incomplete';
      report.detail =
        `${h.staleBlocks.count} block(s) of the last update were damaged on the local disk before they were written ` +
        `and still hold their previous content (first: ${h.staleBlocks.first.join(', ')}): the next sync fetches them`;
    }
    if (options.verify) {
      // Under the store's lock: no transfer can change the image while it is read.
      const v = await verifyImage(backupsDir, volumeName, manifest, {
        signal: options.signal,
        onBlock: (blocksDone) => options.onProgress?.({ volumeName, blocksDone, blockCount: h.blockCount }),
      });
      report.verify = {
        blocksChecked: h.blockCount,
        badBlocks: v.badBlocks.length,
        firstBadBlocks: v.badBlocks.slice(0, 10),
        manifestIntact: v.manifestIntact,
      };
      if (!v.ok) {
        report.state = 'corrupt';
        report.detail = !v.manifestIntact
          ? 'the manifest does not match its own digest'
          : !v.sizeMatches
            ? `the image has ${report.sizeBytes} bytes, its manifest ${h.sizeBytes}`
            : `${v.badBlocks.length} of ${h.blockCount} blocks differ from the manifest (first: ${v.badBlocks.slice(0, 10).join(', ')})`;
      }
    }
    return report;
  } finally {
    await store.release();
  }
}

/** Fill in the image file's size and allocation; false if there is no image. */
async function describeImageFile(report: ImageReport): Promise<boolean> {
  try {
    const st = await stat(report.imagePath);
    report.sizeBytes = st.size;
    report.allocatedBytes = st.blocks * 512;
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}
