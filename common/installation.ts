// Which dosvob installation this process belongs to. Installations sharing one DigitalOcean account must never take
// each other's resources for their own leftovers, so each run's names and tags carry the installation's id.
// Node only (not imported by workflow code).
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isValidInstallationId } from './names';

export interface InstallationScope {
  /** The key secret the installation's workers share (they must, to derive the run keys). */
  keySecret: string;
  namespace: string;
  /** The main task queue: installations sharing a namespace each have their own. */
  taskQueue: string;
}

/**
 * `installation_id` from conf.json (or DOSVOB_INSTALLATION_ID) when set; else derived from what every worker of one
 * installation already shares and two installations never do: the key secret, the namespace and the main task queue.
 * Nothing is stored, so workers on several machines agree without coordination; the id reveals nothing of the secret.
 */
export function installationId(configured: string | undefined, scope: InstallationScope): string {
  if (configured) return configured;
  const id = createHmac('sha256', scope.keySecret)
    .update(`dosvob/installation/v1/${scope.namespace}/${scope.taskQueue}`)
    .digest('hex')
    .slice(0, 8);
  // 8 hex digits are never a legacy 10-digit run key; a valid id in every case.
  if (!isValidInstallationId(id)) throw new Error(`derived installation id ${id} is invalid`);
  return id;
}

/** The key secret as workers would use it, without generating one (for commands that only read). */
export function existingKeySecret(configured: string | undefined, dataDir: string): string | undefined {
  if (configured) return configured;
  try {
    return readFileSync(path.join(dataDir, 'key-secret'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
