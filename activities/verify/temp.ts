// Temporary images for checks (an old version restored, a partition extracted), under the backups directory's own
// `.dosvob/.verify/`: on the same filesystem as the image, so a restore can reflink it, and never in /tmp, which may be
// a small tmpfs. Each file is flock(2)ed by its user while it exists (the store's StoreLock); one whose lock nobody
// holds was left by a process that died, and the next check removes it.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreLock, VolumeBusyError } from '../store';
import { unlinkIfExists } from '../store/fsutil.js';

export function verifyTempDir(backupsDir: string): string {
  return join(backupsDir, '.dosvob', '.verify');
}

/** Remove temporary files whose owner is gone (their lock is free). */
export async function sweepTempFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => n.endsWith('.lock'))) {
    const lockPath = join(dir, name);
    let lock: StoreLock;
    try {
      lock = await StoreLock.acquire(lockPath, name);
    } catch (err) {
      if (err instanceof VolumeBusyError) continue; // in use
      throw err;
    }
    try {
      const base = lockPath.slice(0, -'.lock'.length);
      for (const p of [base, `${base}.partial`]) await unlinkIfExists(p);
      removed.push(base);
      await unlinkIfExists(lockPath);
    } finally {
      await lock.release();
    }
  }
  return removed;
}

/**
 * Run `fn` with the path of a new temporary file (not created: `fn` makes it), removed afterwards whatever happens.
 * `label` names it for a person looking at the directory (`web-data-20261202T134500Z-1a2b3c`).
 */
export async function withTempFile<T>(dir: string, label: string, fn: (path: string) => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true });
  await sweepTempFiles(dir);
  const path = join(dir, `${label.replace(/[^A-Za-z0-9._@-]/g, '_')}-${randomBytes(4).toString('hex')}.img`);
  const lock = await StoreLock.acquire(`${path}.lock`, label);
  try {
    return await fn(path);
  } finally {
    await unlinkIfExists(path);
    await unlinkIfExists(`${path}.partial`);
    await unlinkIfExists(`${path}.lock`);
    await lock.release();
  }
}
