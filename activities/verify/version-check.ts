// Checking one kept version: its filesystem (fsck) or its blocks against their hashes. The backup's check of the
// newest version runs on the image itself, under the store's lock so that no sync rewrites it meanwhile; an on-demand
// check takes the lock only to clone the image (reflink). An older version (or the newest while its store is busy, or
// where the filesystem cannot clone) is restored to a temporary sparse file first, every block checked on the way, and
// removed after. Either way the result is recorded in the version's checks, and a failed one makes it suspect.
import { constants } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import {
  StoreLock,
  VersionDamagedError,
  VersionNotFoundError,
  VolumeBusyError,
  currentVersionId,
  listVersions,
  readVersionBlocks,
  restoreVersion,
  storePaths,
  type VersionRecord,
} from '../store';
import { exists, unlinkIfExists } from '../store/fsutil.js';
import { fsckImage, type FsckReport } from './fsck';
import { recordVersionCheck } from './record';
import { verifyTempDir, withTempFile } from './temp';
import type { CheckResult } from './checkers';

export interface VersionCheckProgress {
  key: string;
  versionId: string;
  phase: 'restore' | 'fsck' | 'hashes';
  blocksDone?: number;
  blockCount?: number;
}

export interface VersionCheckOptions {
  signal?: AbortSignal;
  onProgress?: (p: VersionCheckProgress) => void;
  /** Where the checkers are looked for (tests: a directory without them). */
  searchPath?: readonly string[];
  /** The time recorded (tests); default now. */
  now?: () => Date;
  /**
   * How the newest version is read. `image` (the backup's check, which no sync of the same volume can overlap): on the
   * image, under the store's lock for the whole check. `clone` (an on-demand check, which a scheduled sync may meet):
   * the lock only while the image is cloned (reflink), else a temporary restore, so a sync is never kept waiting.
   */
  newest?: 'image' | 'clone';
}

export interface VersionFsckResult extends FsckReport {
  key: string;
  versionId: string;
  /** When the check ran (ISO): the `at` of the recorded VersionCheck. */
  at: string;
  /** The image itself (the newest version), a clone of it, or a temporary restore of the version. */
  source: 'image' | 'clone' | 'restored';
}

export interface VersionHashResult {
  key: string;
  versionId: string;
  at: string;
  result: Exclude<CheckResult, 'unchecked'>;
  blocksChecked: number;
  summary: string;
}

async function findVersion(backupsDir: string, key: string, versionId: string): Promise<VersionRecord> {
  const v = (await listVersions(backupsDir, key)).find((x) => x.versionId === versionId);
  if (!v || v.damaged !== undefined) {
    throw new VersionNotFoundError(
      `${key} has no version ${versionId}${v?.damaged ? ` that can be read (${v.damaged})` : ''}`,
    );
  }
  return v;
}

/** The check on the image itself, if the image is this version and nothing else is working on the store. */
async function onImage<T>(backupsDir: string, key: string, versionId: string, fn: (image: string) => Promise<T>) {
  const paths = storePaths(backupsDir, key);
  let lock: StoreLock;
  try {
    lock = await StoreLock.acquire(paths.lock, key);
  } catch (err) {
    if (err instanceof VolumeBusyError) return undefined;
    throw err;
  }
  try {
    // Under the lock: an update committed but not applied (manifest.next) means the image is between two versions.
    if ((await currentVersionId(backupsDir, key)) !== versionId || (await exists(paths.manifestNext))) return undefined;
    return { value: await fn(paths.image) };
  } finally {
    await lock.release();
  }
}

/** A reflink clone (instant, shares the image's blocks); false where the filesystem cannot. */
async function cloneFile(from: string, to: string): Promise<boolean> {
  try {
    await copyFile(from, to, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    await unlinkIfExists(to);
    return false;
  }
}

function detailOf(report: FsckReport): string {
  const parts = report.parts.map((p) =>
    report.parts.length > 1 || p.partition !== null
      ? `partition ${p.partition ?? '-'} (${p.filesystem}): ${p.verdict}`
      : p.verdict,
  );
  return [report.summary, ...parts.filter((p) => p !== report.summary)].join('\n');
}

/** Check a version's filesystem(s) read-only and record the verdict (kind `fsck`). */
export async function checkVersionFilesystem(
  backupsDir: string,
  key: string,
  versionId: string,
  options: VersionCheckOptions = {},
): Promise<VersionFsckResult> {
  const version = await findVersion(backupsDir, key, versionId);
  const at = (options.now?.() ?? new Date()).toISOString();
  const tempDir = verifyTempDir(backupsDir);
  const fsckOptions = {
    tempDir,
    signal: options.signal,
    searchPath: options.searchPath,
    label: `${key} ${versionId}`,
    onTick: () => options.onProgress?.({ key, versionId, phase: 'fsck' }),
  };
  let found: { report: FsckReport; source: VersionFsckResult['source'] } | undefined;
  if (version.newest && options.newest !== 'clone') {
    const onTheImage = await onImage(backupsDir, key, versionId, (image) => fsckImage(image, fsckOptions));
    if (onTheImage) found = { report: onTheImage.value, source: 'image' };
  } else if (version.newest) {
    const report = await withTempFile(tempDir, `${key}-${versionId}`, async (tmp) => {
      const cloned = await onImage(backupsDir, key, versionId, (image) => cloneFile(image, tmp));
      return cloned?.value ? fsckImage(tmp, { ...fsckOptions, scratch: true }) : undefined;
    });
    if (report) found = { report, source: 'clone' };
  }
  if (!found) {
    try {
      const report = await withTempFile(tempDir, `${key}-${versionId}`, async (tmp) => {
        await restoreVersion(backupsDir, key, versionId, tmp, {
          signal: options.signal,
          onProgress: ({ blocksDone, blockCount }) =>
            options.onProgress?.({ key, versionId, phase: 'restore', blocksDone, blockCount }),
        });
        return fsckImage(tmp, { ...fsckOptions, scratch: true });
      });
      found = { report, source: 'restored' };
    } catch (err) {
      if (!(err instanceof VersionDamagedError)) throw err;
      // It cannot be read back as it was taken: that is a failed check of its hashes, and no filesystem to check.
      await recordVersionCheck(backupsDir, key, versionId, {
        kind: 'hashes',
        at,
        ok: false,
        result: 'failed',
        detail: err.message,
      });
      const summary = `failed: the version cannot be read back byte-exact (${err.message})`;
      found = {
        report: { result: 'failed', layout: 'unknown', parts: [], summary },
        source: 'restored',
      };
    }
  }
  const { report, source } = found;
  if (report.parts.length > 0 || report.result !== 'failed') {
    await recordVersionCheck(backupsDir, key, versionId, {
      kind: 'fsck',
      at,
      ok: report.result !== 'failed',
      result: report.result,
      detail: detailOf(report),
    });
  }
  return { ...report, key, versionId, at, source };
}

/** Read every block of a version and check it against its hash; record the verdict (kind `hashes`). */
export async function checkVersionHashes(
  backupsDir: string,
  key: string,
  versionId: string,
  options: VersionCheckOptions = {},
): Promise<VersionHashResult> {
  await findVersion(backupsDir, key, versionId);
  const at = (options.now?.() ?? new Date()).toISOString();
  let blocksChecked = 0;
  let failure: string | undefined;
  try {
    for await (const b of readVersionBlocks(backupsDir, key, versionId, {
      signal: options.signal,
      onProgress: ({ blocksDone, blockCount }) =>
        options.onProgress?.({ key, versionId, phase: 'hashes', blocksDone, blockCount }),
    })) {
      blocksChecked = b.index + 1;
    }
  } catch (err) {
    if (!(err instanceof VersionDamagedError)) throw err;
    failure = err.message;
  }
  const summary =
    failure === undefined ? `passed: all ${blocksChecked} blocks match the version's hashes` : `failed: ${failure}`;
  await recordVersionCheck(backupsDir, key, versionId, {
    kind: 'hashes',
    at,
    ok: failure === undefined,
    result: failure === undefined ? 'passed' : 'failed',
    detail: summary,
  });
  return { key, versionId, at, result: failure === undefined ? 'passed' : 'failed', blocksChecked, summary };
}
