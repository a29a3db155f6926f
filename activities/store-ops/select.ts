// Which store(s) and which version a person means. A volume is named by its DigitalOcean name (every region's store of
// that name), by its store key (`name` or `name@region`, as `dosvob versions` prints), or as `name@region` for the
// store that region's volume of that name owns, whatever its key.
import { listStoreIdentities, listVersions, type StoreIdentity, type VersionRecord } from '../store';

/** The failure type of such a request (the CLI's exit code 2). */
export const STORE_REQUEST_INVALID = 'StoreRequestInvalid';

/** A request that names something the store does not have, or asks for something it refuses: exit code 2. */
export class StoreRequestError extends Error {
  readonly code = STORE_REQUEST_INVALID;
  constructor(message: string) {
    super(message);
    this.name = 'StoreRequestError';
  }
}

/** The stores `volume` names (all of them when undefined), in key order. */
export async function resolveStores(backupsDir: string, volume?: string): Promise<StoreIdentity[]> {
  const all = await listStoreIdentities(backupsDir);
  if (volume === undefined) return all;
  const byKey = all.filter((s) => s.key === volume);
  if (byKey.length > 0) return byKey;
  const at = volume.indexOf('@');
  const found =
    at < 0
      ? all.filter((s) => s.name === volume)
      : all.filter((s) => s.name === volume.slice(0, at) && s.region === volume.slice(at + 1));
  if (found.length === 0) {
    const known = all.map((s) => s.key).join(', ');
    throw new StoreRequestError(
      `no backups of ${JSON.stringify(volume)} in ${backupsDir}` + (known ? ` (it has: ${known})` : ' (it has none)'),
    );
  }
  return found;
}

/** Exactly one store: a name two regions share must be given with its region. */
export async function resolveOneStore(backupsDir: string, volume: string): Promise<StoreIdentity> {
  const found = await resolveStores(backupsDir, volume);
  if (found.length > 1) {
    throw new StoreRequestError(
      `${volume} has backups from ${found.length} regions: name one of ` +
        found.map((s) => `${s.key}${s.region ? ` (${s.region})` : ''}`).join(', '),
    );
  }
  return found[0]!;
}

export interface VersionChoice {
  /** An exact version id. */
  versionId?: string;
  /** The newest version committed at or before this instant (ISO). */
  at?: string;
}

/** The version a restore means: by id, the newest at or before `at`, or else the newest. */
export async function chooseVersion(backupsDir: string, key: string, choice: VersionChoice): Promise<VersionRecord> {
  if (choice.versionId !== undefined && choice.at !== undefined) {
    throw new StoreRequestError('give either a version or a time, not both');
  }
  const versions = (await listVersions(backupsDir, key)).filter((v) => v.damaged === undefined);
  if (versions.length === 0) throw new StoreRequestError(`${key} has no version that can be restored`);
  if (choice.versionId !== undefined) {
    const v = versions.find((x) => x.versionId === choice.versionId);
    if (!v) {
      throw new StoreRequestError(
        `${key} has no version ${choice.versionId} (it has ${versions.length}: ` +
          `${versions[0]!.versionId} ... ${versions[versions.length - 1]!.versionId}; see dosvob versions ${key})`,
      );
    }
    return v;
  }
  if (choice.at !== undefined) {
    const at = Date.parse(choice.at);
    if (Number.isNaN(at)) throw new StoreRequestError(`not a time: ${JSON.stringify(choice.at)}`);
    const before = versions.filter((v) => Date.parse(v.time) <= at);
    const v = before[before.length - 1];
    if (!v) {
      throw new StoreRequestError(
        `${key} has no version at or before ${new Date(at).toISOString()}: its oldest is from ${versions[0]!.time}`,
      );
    }
    return v;
  }
  return versions.find((v) => v.newest) ?? versions[versions.length - 1]!;
}
