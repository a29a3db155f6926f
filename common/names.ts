// Deterministic names for everything a run creates, so every create can look up before it creates
// and every sweep can recognise dosvob's leftovers (tag AND name prefix, never one alone).
// Pure functions: imported by workflow code too.

export const EPHEMERAL_PREFIX = 'dosvob-ephemeral';
export const EPHEMERAL_TAG = 'dosvob-ephemeral';
export const MAX_VOLUME_NAME = 64;

/** A short, stable id for one run (from its Temporal run id), used in resource names. */
export function runKey(runId: string): string {
  return runId
    .replace(/[^0-9a-f]/gi, '')
    .slice(0, 10)
    .toLowerCase();
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

export const names = {
  droplet: (run: string, region: string) => ephemeralName(run, region),
  snapshot: (run: string, volumeName: string) => ephemeralName(run, volumeName),
  copyVolume: (run: string, volumeName: string) => ephemeralName(run, volumeName),
  sshKey: (run: string) => ephemeralName(run, 'key'),
};

/** The device path of an attached volume on a DigitalOcean droplet. */
export function devicePath(volumeName: string): string {
  return `/dev/disk/by-id/scsi-0DO_Volume_${volumeName}`;
}
