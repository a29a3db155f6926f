// Checks made before a run starts, in this process, so a wrong token or an unknown region is one line and exit
// code 2 at once rather than a failed workflow; the volume list also gives the run its summary in the web UI.
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../common/config';
import { createDoApi } from '../activities/digitalocean/api';
import { createDigitalOceanActivities, type SourceVolume } from '../activities/digitalocean/activities';
import { FailureTypes, toFailure } from '../activities/digitalocean/errors';
import { formatBytes } from '../workflows/util';
import { UserError } from './errors';

/** The DigitalOcean activities that need no Temporal context (no waits), for use right here in the CLI. */
export function directDigitalOcean(config: Config, installationId = '') {
  const api = createDoApi({ token: config.doToken, apiUrl: config.apiUrl });
  // No key secret: nothing called from the CLI derives a run key. The installation id matters to findLeftovers only.
  return createDigitalOceanActivities({ api, keySecret: '', sshPort: config.sshPort, installationId });
}

/** A DigitalOcean failure as the CLI reports it: bad input (2) for a rejected token or bad configuration, else 1. */
export function explainDigitalOceanFailure(err: unknown, what: string, apiUrl: string): UserError {
  const failure = err instanceof ApplicationFailure ? err : toFailure(err, what);
  const type = failure instanceof ApplicationFailure ? failure.type : undefined;
  if (type === FailureTypes.auth || type === FailureTypes.config) return new UserError(failure.message);
  return new UserError(`cannot reach the DigitalOcean API at ${apiUrl}: ${failure.message}`, 1);
}

/** Token and regions checked; the volumes a run would back up now. */
export async function preflight(config: Config): Promise<SourceVolume[]> {
  const digitalOcean = directDigitalOcean(config);
  try {
    await digitalOcean.checkAccess();
    return await digitalOcean.listSourceVolumes({
      regions: config.regions,
      include: config.include,
      exclude: config.exclude,
    });
  } catch (err) {
    throw explainDigitalOceanFailure(err, 'checking the DigitalOcean token', config.apiUrl);
  }
}

const MAX_SUMMARY = 200;

/** One line for the web UI's summary: the volumes by region, or their count when the list is long. */
export function runSummary(volumes: readonly SourceVolume[], regions: readonly string[]): string {
  if (volumes.length === 0) return `dosvob backup: no volumes matched in ${regions.join(', ')}`;
  const byRegion = new Map<string, string[]>();
  for (const v of volumes) byRegion.set(v.region, [...(byRegion.get(v.region) ?? []), v.name]);
  const full = `dosvob backup of ${[...byRegion].map(([region, names]) => `${names.join(', ')} (${region})`).join('; ')}`;
  if (full.length <= MAX_SUMMARY) return full;
  return `dosvob backup of ${volumes.length} volumes in ${[...byRegion.keys()].join(', ')}`;
}

/** The web UI's details: every volume with its region and size. */
export function runDetails(volumes: readonly SourceVolume[]): string {
  const rows = volumes.map((v) => `| ${v.name} | ${v.region} | ${formatBytes(v.sizeGigabytes * 2 ** 30)} |`);
  return ['| volume | region | size |', '| --- | --- | --- |', ...rows].join('\n');
}
