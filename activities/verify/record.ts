// A version's checks, in versions/<id>.checks.json next to its manifest (written atomically, as the store writes its
// files); listVersions reads them into VersionRecord.checks and derives `suspect`.
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { flock } from 'fs-ext';
import { isErrno, versionPath, type VersionCheck } from '../store';
import { unlinkIfExists, writeFileAtomic } from '../store/fsutil.js';

/** The file keeps the latest checks only: a version checked every night for years needs no thousand entries. */
const KEEP_CHECKS = 20;
/** A checker's full output belongs in the run's result; the file keeps what a listing shows. */
const MAX_DETAIL = 4096;

async function readChecks(path: string): Promise<VersionCheck[]> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown;
    return Array.isArray(parsed) ? (parsed as VersionCheck[]) : [];
  } catch (err) {
    if (isErrno(err, 'ENOENT') || err instanceof SyntaxError) return [];
    throw err;
  }
}

function tryLockExclusive(fh: FileHandle): Promise<boolean> {
  return new Promise((resolve, reject) =>
    flock(fh.fd, 'exnb', (err) => {
      if (!err) resolve(true);
      else if (isErrno(err, 'EAGAIN') || isErrno(err, 'EWOULDBLOCK')) resolve(false);
      else reject(err);
    }),
  );
}

/** Writers of this process, by manifest, queued behind each other. */
const queues = new Map<string, Promise<unknown>>();

/**
 * Two checks of one version can end together (a run's fsck step and a `dosvob verify`, or two verifies): each reads
 * the file, appends, and replaces it, so without a lock one verdict would be lost. Within this process the writers of
 * a version queue up; across processes they take an flock on the version's manifest, which is written once and never
 * replaced, so every writer locks the same inode (the checks file itself is replaced by rename and could not carry
 * it). The flock is tried without blocking: a blocking one would hold a libuv thread the holder's own I/O may need.
 */
async function withManifestLock(manifest: string, fn: () => Promise<void>): Promise<void> {
  const previous = queues.get(manifest) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(() => underFlock(manifest, fn));
  queues.set(manifest, mine);
  try {
    await mine;
  } finally {
    if (queues.get(manifest) === mine) queues.delete(manifest);
  }
}

async function underFlock(manifest: string, fn: () => Promise<void>): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(manifest, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return; // pruned before the check ended: nothing to record it on
    throw err;
  }
  try {
    // Another process holds it only for one small read and write.
    for (let waited = 0; !(await tryLockExclusive(fh)); waited += 20) {
      if (waited >= 60_000) throw new Error(`the checks of ${manifest} stayed locked by another process for a minute`);
      await delay(20);
    }
    await fn();
  } finally {
    await fh.close(); // closing the last descriptor drops the flock
  }
}

/** Append a check to the version's file. If the version was removed meanwhile, nothing is left behind. */
export async function recordVersionCheck(
  backupsDir: string,
  key: string,
  versionId: string,
  check: VersionCheck,
): Promise<void> {
  const manifest = versionPath(backupsDir, key, versionId);
  const path = `${manifest}.checks.json`;
  const detail =
    check.detail && check.detail.length > MAX_DETAIL ? `${check.detail.slice(0, MAX_DETAIL)}...` : check.detail;
  await withManifestLock(manifest, async () => {
    const checks = [...(await readChecks(path)), { ...check, ...(detail !== undefined ? { detail } : {}) }];
    await writeFileAtomic(path, `${JSON.stringify(checks.slice(-KEEP_CHECKS), null, 2)}\n`);
  });
  try {
    await stat(manifest);
  } catch (err) {
    // Pruned while it was being checked: removeVersionManifests already unlinked its side files, so this one goes too.
    if (isErrno(err, 'ENOENT')) await unlinkIfExists(path);
    else throw err;
  }
}
