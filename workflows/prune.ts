// `dosvob prune` and `dosvob versions protect|unprotect`: work on the local backup store, so activities on the store's
// task queue (the worker holding the backups directory, which applies its own conf.json's retention policy).
import { proxyActivities } from '@temporalio/workflow';
import type { SettingsActivities } from '../activities/settings';
import type { RetentionActivities } from '../activities/retention/activities';
import type {
  PruneInput,
  PruneOutcome,
  PruneReport,
  SetProtectedInput,
  SetProtectedResult,
} from '../activities/retention/types';

const { resolveRunSettings } = proxyActivities<SettingsActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

/** Pruning decides again from what is on disk, so a retry after a crash finishes the job. */
export function retentionActivities(storeTaskQueue: string) {
  return proxyActivities<RetentionActivities>({
    taskQueue: storeTaskQueue,
    // GC's mark reads every version's manifest; heartbeats (per store, per chunk removed) show it is alive.
    startToCloseTimeout: '6 hours',
    heartbeatTimeout: '2 minutes',
    retry: { maximumAttempts: 3 },
  });
}

export async function pruneWorkflow(input: PruneInput = {}): Promise<PruneReport> {
  const { storeTaskQueue } = await resolveRunSettings({});
  return await retentionActivities(storeTaskQueue).pruneVersions.executeWithOptions(
    { summary: input.dryRun ? 'decide what retention keeps (dry run)' : 'prune versions, collect garbage' },
    [input],
  );
}

export async function protectVersionWorkflow(input: SetProtectedInput): Promise<SetProtectedResult> {
  const { storeTaskQueue } = await resolveRunSettings({});
  return await retentionActivities(storeTaskQueue).setVersionProtected(input);
}

/** The run's result's summary of a prune (workflow code: what pruneVersions returned, condensed). */
export function pruneOutcome(report: PruneReport): PruneOutcome {
  const errors = [
    ...report.stores.filter((s) => s.error).map((s) => `${s.key}: ${s.error}`),
    ...(report.gcError ? [`garbage collection: ${report.gcError}`] : []),
  ];
  return {
    ok: errors.length === 0,
    versionsRemoved: report.versionsRemoved,
    removed: report.stores.filter((s) => s.removed.length > 0).map((s) => ({ key: s.key, versionIds: s.removed })),
    chunksRemoved: report.gc?.chunksRemoved ?? 0,
    bytesFreed: (report.gc?.bytesFreed ?? 0) + (report.gc?.tmpBytesFreed ?? 0),
    skipped: report.stores.filter((s) => s.skipped).map((s) => `${s.key}: ${s.skipped}`),
    ...(errors.length > 0 ? { error: errors.join('; ') } : {}),
  };
}
