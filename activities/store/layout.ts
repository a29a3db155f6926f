// Where dosvob keeps things under the backups directory.
//
//   backups/<volume>.img                     the raw, sparse, loop-mountable image (the user's data)
//   backups/.dosvob/<volume>/manifest        binary manifest of the image (manifest.ts)
//   backups/.dosvob/<volume>/manifest.next   the manifest of a committed but not yet applied transfer
//   backups/.dosvob/<volume>/staging/        one in-flight transfer: plan.json, stripe-<k>.log (redo log),
//                                            incoming.img (first sync only), COMMIT (present = verified, apply pending)
//   backups/.dosvob/<volume>/versions/       reserved for earlier versions (reverse deltas of overwritten blocks,
//                                            rdiff-backup style); the apply step is the one place that would write them
//   backups/.dosvob/<volume>/image.stamp     size and mtime of the image at the last commit
//   backups/.dosvob/<volume>/lock            pid of the process working on this volume
import { join } from 'node:path';

/** Bump when any on-disk structure below changes incompatibly. */
export const STORE_FORMAT_VERSION = 1;

export interface StorePaths {
  backupsDir: string;
  volumeName: string;
  image: string;
  dataDir: string;
  manifest: string;
  manifestNext: string;
  staging: string;
  plan: string;
  commit: string;
  incoming: string;
  versions: string;
  lock: string;
  stamp: string;
  stripeLog(k: number): string;
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/i;

export function storePaths(backupsDir: string, volumeName: string): StorePaths {
  if (!NAME_RE.test(volumeName) || volumeName.includes('..')) {
    throw new Error(`invalid volume name for a backup file: ${JSON.stringify(volumeName)}`);
  }
  const dataDir = join(backupsDir, '.dosvob', volumeName);
  const staging = join(dataDir, 'staging');
  return {
    backupsDir,
    volumeName,
    image: join(backupsDir, `${volumeName}.img`),
    dataDir,
    manifest: join(dataDir, 'manifest'),
    manifestNext: join(dataDir, 'manifest.next'),
    staging,
    plan: join(staging, 'plan.json'),
    commit: join(staging, 'COMMIT'),
    incoming: join(staging, 'incoming.img'),
    versions: join(dataDir, 'versions'),
    lock: join(dataDir, 'lock'),
    stamp: join(dataDir, 'image.stamp'),
    stripeLog: (k: number) => join(staging, `stripe-${k}.log`),
  };
}
