// Which of dosvob's ephemeral resources a sweep may delete. Only resources with dosvob's name prefix (and, except for
// SSH keys, which have no tags, its tag) are ever considered. Of those, this installation's are leftovers unless they
// belong to the run that sweeps; another installation's, and those from before installation ids, only once they are
// far older than any run, since that installation may be in the middle of a run right now.
import { installationTag, isEphemeralName, legacyRunStart, ownerOfName, runPrefix } from '../../common/names';

/** A run that started this long ago is over: no run lasts a week (README, "How it works"). */
export const FOREIGN_LEFTOVER_AGE_MS = 7 * 24 * 3600_000;

export interface SweepScope {
  installationId: string;
  /** The sweeping run's own `<installation>-<key>`: never its leftovers. */
  exceptRun?: string;
  foreignAfterMs: number;
  nowMs: number;
}

export interface Candidate {
  name: string;
  /** Undefined for SSH keys (DigitalOcean has no tags on them). */
  tags: readonly string[] | undefined;
  /** When DigitalOcean says it was made (SSH keys: the time dosvob wrote into the key's comment). */
  createdAtMs: number | undefined;
}

export function isLeftover(c: Candidate, scope: SweepScope): boolean {
  if (!isEphemeralName(c.name)) return false;
  if (scope.exceptRun && c.name.startsWith(runPrefix(scope.exceptRun))) return false;
  const owner = ownerOfName(c.name);
  const ours =
    owner?.kind === 'installation' &&
    owner.installationId === scope.installationId &&
    (c.tags === undefined || c.tags.includes(installationTag(scope.installationId)));
  if (ours) return true;
  const since = c.createdAtMs ?? (owner?.kind === 'legacy' ? legacyRunStart(owner.runKey, scope.nowMs) : undefined);
  // Of unknown age: never someone else's.
  return since !== undefined && scope.nowMs - since > scope.foreignAfterMs;
}

/** The comment of a run SSH key dosvob registers: whose it is and when it was registered (keys have no created_at). */
export function registeredKeyComment(installationId: string, nowMs: number): string {
  return `dosvob:${installationId}:${Math.floor(nowMs / 1000)}`;
}

/** `publicKey` ("type base64 [comment]") with dosvob's registration comment instead of its own. */
export function withRegisteredComment(publicKey: string, installationId: string, nowMs: number): string {
  const [type, blob] = publicKey.trim().split(/\s+/);
  return `${type} ${blob} ${registeredKeyComment(installationId, nowMs)}`;
}

/** When a key was registered, from its comment; undefined for keys dosvob did not comment. */
export function keyRegisteredAtMs(publicKey: string | undefined): number | undefined {
  const match = /\sdosvob:[a-z0-9]+:(\d+)\s*$/.exec(publicKey ?? '');
  return match ? Number(match[1]) * 1000 : undefined;
}

export function createdAtMs(createdAt: string | undefined): number | undefined {
  const ms = createdAt ? Date.parse(createdAt) : NaN;
  return Number.isFinite(ms) ? ms : undefined;
}
