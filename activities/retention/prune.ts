// Pruning: which versions of each store retention keeps, and the removal of the others' manifests.
//
// Per store key and per lineage (volume id): a volume deleted and re-created under the same name starts a new lineage
// of the same key, and the old lineage's versions are pruned by the same policy among themselves, so its newest stays
// until a person removes it (issue 10: nothing is pruned because the source is gone). The newest version of the key
// (the image) is always kept, and protected ones. Only manifests are removed (atomic per version): chunks stay until
// garbage collection, so a crash mid-prune leaves garbage, never a version with a missing chunk.
import {
  StoreLock,
  VolumeBusyError,
  isStoreKey,
  listStores,
  listVersions,
  removeVersionManifests,
  storePaths,
  type VersionRecord,
} from '../store/index.js';
import { applyRetention, type RetentionPolicy, type RetentionVersion } from '../../common/retention';
import type { StorePruneReport, VersionVerdict } from './types';

interface Candidate extends RetentionVersion {
  readonly record: VersionRecord;
}

export interface PruneStoreOptions {
  dryRun?: boolean;
  /** The present (ISO); a version dated after it does not set the reference of `within` rules. Default: now. */
  now?: string;
  /** Tests: called with the lock held, after deciding and before removing. */
  beforeRemove?: (key: string, remove: readonly string[]) => void | Promise<void>;
}

/** A version whose latest check failed (issue 12) fills no rule's slot. */
function isSuspect(v: VersionRecord): boolean {
  return v.suspect;
}

/** Keep/remove for every version of one key, newest first, without touching anything. */
export function decide(versions: readonly VersionRecord[], policy: RetentionPolicy, now?: string): VersionVerdict[] {
  const verdicts: VersionVerdict[] = [];
  const lineages = new Map<string, Candidate[]>();
  for (const record of versions) {
    if (record.damaged) {
      // Its manifest cannot be read: it cannot be restored, and retention cannot date it honestly. Left for a person.
      verdicts.push(verdictOf(record, true, [`damaged manifest, not pruned (${record.damaged})`]));
      continue;
    }
    const list = lineages.get(record.volumeId) ?? [];
    list.push({
      id: record.versionId,
      time: record.time,
      protected: record.protected,
      suspect: isSuspect(record),
      record,
    });
    lineages.set(record.volumeId, list);
  }
  const current = versions.find((v) => v.newest)?.volumeId;
  for (const [volumeId, list] of lineages) {
    const result = applyRetention(list, policy, now === undefined ? {} : { now });
    for (const d of result.decisions) {
      const reasons = d.reasons.map((r) =>
        r.rule === 'newest' && volumeId !== current ? `newest of the earlier volume ${volumeId}` : r.text,
      );
      // The image's version, whatever the engine said (it is the newest of its lineage, so it agrees).
      const keep = d.keep || d.version.record.newest;
      if (keep && reasons.length === 0) reasons.push('newest');
      verdicts.push(verdictOf(d.version.record, keep, keep ? reasons : []));
    }
  }
  return verdicts.sort((a, b) =>
    a.time < b.time ? 1 : a.time > b.time ? -1 : a.versionId < b.versionId ? 1 : a.versionId > b.versionId ? -1 : 0,
  );
}

function verdictOf(v: VersionRecord, keep: boolean, reasons: string[]): VersionVerdict {
  return {
    versionId: v.versionId,
    time: v.time,
    volumeId: v.volumeId,
    newest: v.newest,
    protected: v.protected,
    keep,
    reasons,
  };
}

/**
 * Prune one store under its lock, so that a sync cannot commit a version between the decision and the removal (the
 * lock is the one a sync holds for its whole run; a busy store is skipped this time, not waited for). A dry run takes
 * no lock: it writes nothing, not even the lock file's pid.
 */
export async function pruneStore(
  backupsDir: string,
  key: string,
  policy: RetentionPolicy,
  options: PruneStoreOptions = {},
): Promise<StorePruneReport> {
  const now = options.now ?? new Date().toISOString();
  let lock: StoreLock | undefined;
  if (!options.dryRun) {
    try {
      lock = await StoreLock.acquire(storePaths(backupsDir, key).lock, key);
    } catch (err) {
      if (err instanceof VolumeBusyError) return { key, kept: 0, removed: [], skipped: err.message };
      throw err;
    }
  }
  try {
    const versions = decide(await listVersions(backupsDir, key), policy, now);
    const remove = versions.filter((v) => !v.keep).map((v) => v.versionId);
    let removed = remove;
    if (!options.dryRun && remove.length > 0) {
      await options.beforeRemove?.(key, remove);
      removed = await removeVersionManifests(backupsDir, key, remove);
    }
    return { key, versions, kept: versions.length - remove.length, removed };
  } finally {
    await lock?.release();
  }
}

/** Prune every store of the backups directory; one store's failure is reported and does not stop the others. */
export async function pruneStores(
  backupsDir: string,
  policy: RetentionPolicy,
  options: PruneStoreOptions & { signal?: AbortSignal; onStore?: (key: string) => void } = {},
): Promise<StorePruneReport[]> {
  const out: StorePruneReport[] = [];
  for (const key of (await listStores(backupsDir)).filter(isStoreKey)) {
    options.signal?.throwIfAborted();
    options.onStore?.(key);
    try {
      out.push(await pruneStore(backupsDir, key, policy, options));
    } catch (err) {
      out.push({ key, kept: 0, removed: [], error: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}
