// `dosvob versions`: every kept version of the stores asked for, with what each one alone costs (the bytes removing it
// would free, once garbage collection has run), and what the whole store costs against the images it holds.
import { listVersions, storeUsage, type StoreUsage, type VersionCheck, type VersionRecord } from '../store';
import { resolveStores } from './select';

export interface VersionRow {
  versionId: string;
  /** When it was committed (ISO). */
  time: string;
  newest: boolean;
  snapshotId: string | null;
  snapshotCreatedAt: string | null;
  runId: string | null;
  origin: VersionRecord['origin'];
  /** Blocks that differ from the version before (null: the first, or not known). */
  blocksChanged: number | null;
  blockCount: number;
  sizeBytes: number;
  /** Bytes of saved blocks no other version needs. The newest version's blocks are the image's: 0. */
  uniqueBytes: number;
  /** Saved blocks (chunks) it needs, shared or not. */
  chunkRefs: number;
  protected: boolean;
  /** Its snapshot was taken with the filesystem frozen by a hook; false: crash-consistent. */
  frozen: boolean;
  /** Its latest check of some kind failed (issue 12): retention keeps the newest version that is not. */
  suspect: boolean;
  /** The latest check of each kind (`fsck`, `hashes`), oldest first. */
  checks: VersionCheck[];
  /** Its manifest cannot be read: listed so that it can be removed, it cannot be restored. */
  damaged?: string;
}

export interface StoreVersions {
  key: string;
  name: string;
  region: string | null;
  versions: VersionRow[];
}

export interface VersionsReport {
  stores: StoreVersions[];
  /** The whole backups directory (every store, not only those asked for). */
  usage: Omit<StoreUsage, 'versions'>;
}

function latestChecks(checks: readonly VersionCheck[]): VersionCheck[] {
  const latest = new Map<string, VersionCheck>();
  for (const c of checks) if ((latest.get(c.kind)?.at ?? '') <= c.at) latest.set(c.kind, c);
  return [...latest.values()].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

export async function versionsReport(backupsDir: string, volume?: string): Promise<VersionsReport> {
  const stores = await resolveStores(backupsDir, volume);
  const { versions: perVersion, ...usage } = await storeUsage(backupsDir);
  const costOf = new Map(perVersion.map((u) => [`${u.key}/${u.versionId}`, u]));
  const out: StoreVersions[] = [];
  for (const s of stores) {
    const versions = (await listVersions(backupsDir, s.key)).map((v): VersionRow => {
      const cost = costOf.get(`${s.key}/${v.versionId}`);
      return {
        versionId: v.versionId,
        time: v.time,
        newest: v.newest,
        snapshotId: v.snapshotId,
        snapshotCreatedAt: v.snapshotCreatedAt,
        runId: v.runId,
        origin: v.origin,
        blocksChanged: v.blocksChanged,
        blockCount: v.blockCount,
        sizeBytes: v.sizeBytes,
        uniqueBytes: cost?.uniqueBytes ?? 0,
        chunkRefs: cost?.chunkRefs ?? 0,
        protected: v.protected,
        frozen: v.frozen === true,
        suspect: v.suspect,
        checks: latestChecks(v.checks),
        ...(v.damaged !== undefined ? { damaged: v.damaged } : {}),
      };
    });
    out.push({ key: s.key, name: s.name, region: s.region, versions });
  }
  return { stores: out, usage };
}
