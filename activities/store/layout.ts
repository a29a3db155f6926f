// Where dosvob keeps things under the backups directory.
//
// A store is named by its key: the volume's name for the first region that claimed it, `<name>@<region>` for the same
// name in any other region (identity.ts), since DigitalOcean names are unique per region only.
//
//   backups/<volume>.img                     the raw, sparse, loop-mountable image (the user's data): the newest version
//   backups/.dosvob/<volume>/manifest        binary manifest of the image (manifest.ts) = the newest version's
//   backups/.dosvob/<volume>/manifest.next   the manifest of a committed but not yet applied transfer
//   backups/.dosvob/<volume>/staging/        one in-flight transfer: plan.json, stripe-<k>.log (redo log),
//                                            incoming.img (first sync only), COMMIT (present = verified, apply pending)
//   backups/.dosvob/<volume>/versions/<id>   the manifest of each kept version (versions.ts); <id>.protected marks one
//                                            that retention must keep
//   backups/.dosvob/<volume>/identity.json   which volume (name, region) owns the key (identity.ts)
//   backups/.dosvob/.chunks/<2 hex>/<sha256> blocks of older versions, content-addressed, shared by every store
//                                            (chunks.ts); a dot name because `chunks` is a legal volume name
//   backups/.dosvob/<volume>/image.stamp     size and mtime of the image at the last commit
//   backups/.dosvob/<volume>/lock            flock(2)ed by the process working on this volume (lock.ts); holds its pid
import { join } from 'node:path';

/** Bump when any on-disk structure below changes incompatibly. */
export const STORE_FORMAT_VERSION = 2;
/** The format before kept versions: upgraded in place (versions.ts), its manifest becoming the first version. */
export const LEGACY_FORMAT_VERSION = 1;

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
  identity: string;
  lock: string;
  stamp: string;
  stripeLog(k: number): string;
}

/** A store key: a volume name, optionally `@<region>` (no path separator, never `..`, never a leading dot). */
export const STORE_KEY_RE = /^[a-z0-9][a-z0-9._-]{0,127}(@[a-z0-9-]{1,32})?$/i;

export function isStoreKey(key: string): boolean {
  return STORE_KEY_RE.test(key) && !key.includes('..');
}

export function storePaths(backupsDir: string, volumeName: string): StorePaths {
  if (!isStoreKey(volumeName)) {
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
    identity: join(dataDir, 'identity.json'),
    lock: join(dataDir, 'lock'),
    stamp: join(dataDir, 'image.stamp'),
    stripeLog: (k: number) => join(staging, `stripe-${k}.log`),
  };
}

/** The chunk store shared by every key of a backups directory. */
export function chunksDir(backupsDir: string): string {
  return join(backupsDir, '.dosvob', '.chunks');
}

const HASH_HEX_RE = /^[0-9a-f]{64}$/;

export function isChunkName(name: string): boolean {
  return HASH_HEX_RE.test(name);
}

/** Where the block with this SHA-256 (lower-case hex) is kept. */
export function chunkPath(backupsDir: string, hashHex: string): string {
  if (!isChunkName(hashHex)) throw new Error(`not a SHA-256 in hex: ${JSON.stringify(hashHex)}`);
  return join(chunksDir(backupsDir), hashHex.slice(0, 2), hashHex);
}
