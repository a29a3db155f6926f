// Which version a restore to DigitalOcean means, answered by the store worker before anything is created: the volume
// by name, key or `name@region`, and the version by id, time or newest (as `dosvob restore --to FILE` chooses).
import { chooseVersion, resolveOneStore, type VersionChoice } from './select';

export interface ChosenVersion {
  storeKey: string;
  versionId: string;
  /** When it was committed (ISO). */
  time: string;
  snapshotId: string | null;
  /** The source volume's name and region (the region may be unknown for stores of before regions were recorded). */
  volumeName: string;
  region: string | null;
  sizeBytes: number;
  digest: string;
}

export async function chooseVersionToRestore(
  backupsDir: string,
  request: VersionChoice & { volume: string },
): Promise<ChosenVersion> {
  const store = await resolveOneStore(backupsDir, request.volume);
  const v = await chooseVersion(backupsDir, store.key, request);
  return {
    storeKey: store.key,
    versionId: v.versionId,
    time: v.time,
    snapshotId: v.snapshotId,
    volumeName: v.volumeName,
    region: v.region ?? store.region ?? null,
    sizeBytes: v.sizeBytes,
    digest: v.digest,
  };
}
