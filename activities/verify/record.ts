// A version's checks, in versions/<id>.checks.json next to its manifest (written atomically, as the store writes its
// files); listVersions reads them into VersionRecord.checks and derives `suspect`.
import { readFile, stat } from 'node:fs/promises';
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
  const checks = [...(await readChecks(path)), { ...check, ...(detail !== undefined ? { detail } : {}) }];
  await writeFileAtomic(path, `${JSON.stringify(checks.slice(-KEEP_CHECKS), null, 2)}\n`);
  try {
    await stat(manifest);
  } catch (err) {
    // Pruned while it was being checked: removeVersionManifests already unlinked its side files, so this one goes too.
    if (isErrno(err, 'ENOENT')) await unlinkIfExists(path);
    else throw err;
  }
}
