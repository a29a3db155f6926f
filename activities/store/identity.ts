// Which volume a store belongs to. DigitalOcean volume names are unique per region only, so two volumes named `data`
// in nyc3 and fra1 must not share an image: the first region to claim a name gets the key `<name>`, any other region
// `<name>@<region>`. A volume deleted and re-created under the same name in the same region keeps the key (it is a new
// lineage of it: its versions carry the new volume id), and a volume that disappeared keeps its store untouched.
//
// backups/.dosvob/<key>/identity.json records the owner. It is created once with link(2), which fails if the name
// exists, so two transfers claiming the same name at the same time (one droplet per region) cannot both win.
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, readdir } from 'node:fs/promises';
import { isErrno } from './errors.js';
import { fsyncDir, unlinkIfExists, writeFileAtomic } from './fsutil.js';
import { STORE_FORMAT_VERSION, isStoreKey, storePaths } from './layout.js';

export interface StoreIdentity {
  formatVersion: number;
  key: string;
  /** The volume's name at DigitalOcean. */
  name: string;
  /** Its region (null only in a listing of a store made before regions, not yet claimed by a sync that knew one). */
  region: string | null;
  claimedAt: string;
}

const REGION_RE = /^[a-z0-9-]{1,32}$/;

export async function readIdentity(backupsDir: string, key: string): Promise<StoreIdentity | undefined> {
  try {
    const parsed = JSON.parse(await readFile(storePaths(backupsDir, key).identity, 'utf8')) as StoreIdentity;
    return parsed;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** Create identity.json unless it exists; returns the identity in force afterwards. */
async function claim(backupsDir: string, identity: StoreIdentity): Promise<StoreIdentity> {
  const paths = storePaths(backupsDir, identity.key);
  await mkdir(paths.dataDir, { recursive: true });
  const tmp = `${paths.identity}.${randomBytes(4).toString('hex')}.tmp`;
  // writeFileAtomic makes the content durable under the temp name; link() then publishes it or finds another's.
  await writeFileAtomic(tmp, `${JSON.stringify(identity)}\n`);
  try {
    await link(tmp, paths.identity);
    await fsyncDir(paths.dataDir);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  } finally {
    await unlinkIfExists(tmp);
  }
  const now = await readIdentity(backupsDir, identity.key);
  if (!now) throw new Error(`${paths.identity} vanished while it was being claimed`);
  return now;
}

/**
 * The store key of volume `name` in `region`, claiming it if nobody has. Without a region (inputs of older runs) the
 * key is the name, as before. A store of the name with no identity (made before this) goes to the first region that
 * claims it.
 */
export async function claimStoreKey(
  backupsDir: string,
  name: string,
  region: string | null | undefined,
): Promise<string> {
  if (!isStoreKey(name) || name.includes('@')) {
    throw new Error(`invalid volume name for a backup file: ${JSON.stringify(name)}`);
  }
  if (!region) return name;
  if (!REGION_RE.test(region)) throw new Error(`invalid region for a backup file: ${JSON.stringify(region)}`);
  const claimedAt = new Date().toISOString();
  const mine = (key: string): StoreIdentity => ({ formatVersion: STORE_FORMAT_VERSION, key, name, region, claimedAt });
  const plain = await readIdentity(backupsDir, name);
  if (plain?.region === region) return name;
  if (!plain) {
    // Unclaimed (new, or a store from before regions): the first region to get here takes the plain name.
    const got = await claim(backupsDir, mine(name));
    if (got.region === region) return name;
  }
  const key = `${name}@${region}`;
  if (!isStoreKey(key)) throw new Error(`no valid store key for ${name} in ${region}`);
  const other = await claim(backupsDir, mine(key));
  if (other.region !== region) throw new Error(`${key} is claimed by ${other.name} in ${other.region ?? '?'}`);
  return key;
}

/** Names of the stores under backupsDir (store keys; dosvob's own dot directories are not stores). */
export async function listStoreKeys(backupsDir: string): Promise<string[]> {
  try {
    return (await readdir(`${backupsDir}/.dosvob`, { withFileTypes: true }))
      .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
      .map((d) => d.name)
      .sort();
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return [];
    throw err;
  }
}

/** Every store with its owner (a store without identity.json: named by its key, region unknown). */
export async function listStoreIdentities(backupsDir: string): Promise<StoreIdentity[]> {
  const out: StoreIdentity[] = [];
  for (const key of await listStoreKeys(backupsDir)) {
    if (!isStoreKey(key)) continue;
    const id = await readIdentity(backupsDir, key);
    out.push(
      id ?? {
        formatVersion: STORE_FORMAT_VERSION,
        key,
        name: key.split('@')[0]!,
        region: key.includes('@') ? key.split('@')[1]! : null,
        claimedAt: '',
      },
    );
  }
  return out;
}
