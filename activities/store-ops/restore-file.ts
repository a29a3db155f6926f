// `dosvob restore VOLUME --to FILE`: one kept version written as a sparse raw image on the store's machine, every block
// checked against the version's hash on the way (the store's restoreVersion). Everything a person can get wrong is
// refused before a byte is written: an unknown volume, version or time, a FILE that exists, or one inside the backups
// directory (where it would pass for a backup, or replace one).
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';
import { restoreVersion, type RestoreResult } from '../store';
import { chooseVersion, resolveOneStore, StoreRequestError, type VersionChoice } from './select';

export interface RestoreFileRequest extends VersionChoice {
  /** A volume name, store key, or `name@region`. */
  volume: string;
  /** Absolute path on the store worker's machine. */
  toFile: string;
  /** Replace FILE if it exists. */
  force?: boolean;
}

export interface RestoreFileResult extends RestoreResult {
  /** When the version was committed, and its snapshot. */
  time: string;
  snapshotId: string | null;
}

export interface RestoreProgress {
  key: string;
  versionId: string;
  blocksDone: number;
  blockCount: number;
  bytesDone: number;
  sizeBytes: number;
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function checkTarget(backupsDir: string, toFile: string, force: boolean): Promise<void> {
  if (!isAbsolute(toFile))
    throw new StoreRequestError(`--to must be an absolute path on the store's machine: ${toFile}`);
  const inside = relative(resolve(backupsDir), resolve(toFile));
  if (inside === '' || (!inside.startsWith('..') && !isAbsolute(inside))) {
    throw new StoreRequestError(`${toFile} is inside the backups directory ${backupsDir}: restore somewhere else`);
  }
  const dir = await statOrUndefined(dirname(toFile));
  if (!dir?.isDirectory()) throw new StoreRequestError(`${dirname(toFile)} is not a directory`);
  const there = await statOrUndefined(toFile);
  if (there && !force) throw new StoreRequestError(`${toFile} exists: remove it, or pass --force to replace it`);
  if (there && !there.isFile()) throw new StoreRequestError(`${toFile} exists and is not a regular file`);
}

export async function restoreToFile(
  backupsDir: string,
  request: RestoreFileRequest,
  options: { onProgress?: (p: RestoreProgress) => void; signal?: AbortSignal } = {},
): Promise<RestoreFileResult> {
  const store = await resolveOneStore(backupsDir, request.volume);
  const version = await chooseVersion(backupsDir, store.key, request);
  await checkTarget(backupsDir, request.toFile, request.force === true);
  const { key, versionId, blockSize, sizeBytes } = version;
  const result = await restoreVersion(backupsDir, key, versionId, request.toFile, {
    signal: options.signal,
    onProgress: ({ blocksDone, blockCount }) =>
      options.onProgress?.({
        key,
        versionId,
        blocksDone,
        blockCount,
        bytesDone: Math.min(sizeBytes, blocksDone * blockSize),
        sizeBytes,
      }),
  });
  return { ...result, time: version.time, snapshotId: version.snapshotId };
}
