// Deterministic names for everything a run creates, so every create can look up before it creates
// and every sweep can recognise dosvob's leftovers (tag AND name prefix, never one alone).
// A run's names carry its installation's id, so that installations sharing a DigitalOcean account
// tell their resources apart: `dosvob-ephemeral-<installation>-<run key>-<suffix>`.
// Pure functions: imported by workflow code too.

export const EPHEMERAL_PREFIX = 'dosvob-ephemeral';
export const EPHEMERAL_TAG = 'dosvob-ephemeral';
/** Tags of an installation's droplets, volumes and snapshots: `dosvob-installation:<id>`. */
export const INSTALLATION_TAG_PREFIX = 'dosvob-installation:';
export const MAX_VOLUME_NAME = 64;

/**
 * What an installation id may be: short (names keep room for a volume name within 64 characters), lowercase letters
 * and digits (droplet, volume and snapshot names accept them all), and never 10 hex digits, which is what the name of a
 * resource made before installation ids began with.
 */
export const INSTALLATION_ID = /^[a-z0-9]{1,12}$/;
const RUN_KEY = /^[0-9a-f]{10}$/;

export function isValidInstallationId(id: string): boolean {
  return INSTALLATION_ID.test(id) && !RUN_KEY.test(id);
}

/**
 * A short id for one run, from its Temporal run id's random bits: the last 10 hex digits. Temporal's run ids are
 * UUIDv7, whose first 12 digits are the start time in milliseconds and whose last 62 bits are random (a UUIDv4's are
 * random too), so two runs started in the same millisecond still get different keys.
 */
export function runKey(runId: string): string {
  return runId
    .replace(/[^0-9a-f]/gi, '')
    .slice(-10)
    .toLowerCase()
    .padStart(10, '0');
}

/**
 * The run key of runs started before installation ids (kept for their replay: a run in flight across an upgrade keeps
 * the names it started with). Of a UUIDv7 these are the start time in 256 ms steps, nothing random.
 */
export function legacyRunKey(runId: string): string {
  return runId
    .replace(/[^0-9a-f]/gi, '')
    .slice(0, 10)
    .toLowerCase();
}

/** The run part of every name of one run: `<installation>-<run key>`. */
export function runTag(installationId: string, key: string): string {
  return `${installationId}-${key}`;
}

export function installationTag(installationId: string): string {
  return `${INSTALLATION_TAG_PREFIX}${installationId}`;
}

function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** `dosvob-ephemeral-<run>-<suffix>`, kept within DigitalOcean's 64-character name limit. */
export function ephemeralName(run: string, suffix: string): string {
  const full = `${EPHEMERAL_PREFIX}-${run}-${suffix}`;
  if (full.length <= MAX_VOLUME_NAME) return full;
  const hash = fnv1a(suffix);
  return `${full.slice(0, MAX_VOLUME_NAME - hash.length - 1).replace(/-+$/, '')}-${hash}`;
}

export function isEphemeralName(name: string): boolean {
  return name.startsWith(`${EPHEMERAL_PREFIX}-`);
}

export function runPrefix(run: string): string {
  return `${EPHEMERAL_PREFIX}-${run}-`;
}

/** Whose an ephemeral name is: an installation's run, or a run from before installation ids (`legacy`). */
export type NameOwner =
  { kind: 'installation'; installationId: string; runKey: string } | { kind: 'legacy'; runKey: string };

export function ownerOfName(name: string): NameOwner | undefined {
  if (!isEphemeralName(name)) return undefined;
  const [first, second] = name.slice(EPHEMERAL_PREFIX.length + 1).split('-');
  if (first !== undefined && second !== undefined && isValidInstallationId(first) && RUN_KEY.test(second)) {
    return { kind: 'installation', installationId: first, runKey: second };
  }
  if (first !== undefined && RUN_KEY.test(first)) return { kind: 'legacy', runKey: first };
  return undefined;
}

/**
 * When a run from before installation ids started, read from its key (a UUIDv7's time in 256 ms steps); undefined
 * when the digits cannot be a recent time (a server with random run ids).
 */
export function legacyRunStart(key: string, nowMs: number): number | undefined {
  if (!RUN_KEY.test(key)) return undefined;
  const ms = parseInt(key, 16) * 256;
  const earliest = Date.UTC(2023, 0, 1);
  return ms >= earliest && ms <= nowMs + 24 * 3600_000 ? ms : undefined;
}

export const names = {
  /** A region's first droplet is named after the region; its further ones (index 1, 2, …) `<region>-2`, `-3`, …. */
  droplet: (run: string, region: string, index = 0) =>
    ephemeralName(run, index === 0 ? region : `${region}-${index + 1}`),
  snapshot: (run: string, volumeName: string) => ephemeralName(run, volumeName),
  copyVolume: (run: string, volumeName: string) => ephemeralName(run, volumeName),
  sshKey: (run: string) => ephemeralName(run, 'key'),
};

/** The device path of an attached volume on a DigitalOcean droplet. */
export function devicePath(volumeName: string): string {
  return `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`;
}
