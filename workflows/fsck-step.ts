// The backup's check of each new version when conf.json says `verify: fsck`: the filesystem checker runs on the store
// worker, read-only, right after the volume's transfer. A failed check never fails the volume or the run (the bytes
// are the snapshot's, faithfully copied); it marks the version suspect, names the checker's verdict in the volume's
// outcome and the run's message, and makes the run's healthchecks ping a /fail.
import { isCancellation, proxyActivities } from '@temporalio/workflow';
import type { RunSettings } from '../activities/settings';
import type { VerifyActivities } from '../activities/verify/activities';
import { ms, retryPolicy } from './activity-options';
import type { BackupResult, Timings, VolumeOutcome, VolumeProgress } from './types';
import { reason } from './util';

/** The patch that added the step to backupWorkflow: runs recorded before it replay without it. */
export const FSCK_AFTER_TRANSFER = 'fsck-after-transfer';

/** Checks of one version that fail to run at all (the machine, not the filesystem) are retried this often. */
const CHECK_ATTEMPTS = 3;

export function wantsFsck(settings: RunSettings): boolean {
  return settings.verify === 'fsck';
}

/** Check the version the transfer just made; fills `outcome.check` (and `suspect`) and the progress line. */
export async function fsckAfterTransfer(
  t: Timings,
  settings: RunSettings,
  outcome: VolumeOutcome,
  progress: VolumeProgress,
  showStep: () => void,
): Promise<void> {
  if (outcome.storeKey === undefined || outcome.version === undefined) return;
  showStep();
  const verify = proxyActivities<VerifyActivities>({
    taskQueue: settings.storeTaskQueue,
    // An old-enough image is restored first and the checker reads all its metadata: as long as a transfer may take.
    startToCloseTimeout: ms(t.transferTimeoutMs),
    heartbeatTimeout: ms(t.transferHeartbeatTimeoutMs),
    retry: retryPolicy(t, CHECK_ATTEMPTS),
  });
  try {
    const r = await verify.checkVersionFilesystem.executeWithOptions(
      { summary: `fsck ${outcome.name} version ${outcome.version} (read-only)` },
      [{ storeKey: outcome.storeKey, versionId: outcome.version }],
    );
    outcome.check = { kind: 'fsck', result: r.result, summary: r.summary };
    if (r.result === 'failed') outcome.suspect = true;
  } catch (err) {
    if (isCancellation(err)) throw err;
    outcome.check = { kind: 'fsck', result: 'error', summary: `the check could not run: ${reason(err)}` };
  }
  progress.check = `fsck ${outcome.check.summary}`;
}

/** `; SUSPECT db-data (nyc3) 2026…: failed: ext4: e2fsck: exit 4 …; fsck: 2 passed, 1 unchecked` for the message. */
export function checksText(outcomes: readonly VolumeOutcome[]): string {
  const checked = outcomes.filter((o) => o.check !== undefined);
  if (checked.length === 0) return '';
  const suspect = checked
    .filter((o) => o.suspect)
    .map((o) => `; SUSPECT ${o.name} (${o.region}) version ${o.version ?? '?'}: ${o.check!.summary}`);
  const count = (r: string) => checked.filter((o) => o.check!.result === r).length;
  const tally = (['passed', 'failed', 'unchecked', 'error'] as const)
    .filter((r) => count(r) > 0)
    .map((r) => `${count(r)} ${r === 'error' ? 'could not be checked' : r}`)
    .join(', ');
  return `${suspect.join('')}; fsck: ${tally}`;
}

/** A run that made a suspect version pings healthchecks' /fail, although it succeeded. */
export function madeSuspectVersion(result: BackupResult): boolean {
  return result.volumes.some((v) => v.suspect === true);
}
