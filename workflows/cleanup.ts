// The cleanup run (`dosvob cleanup`): what earlier runs left on DigitalOcean (a terminated run runs no code, so its
// resources stay until a sweep), found and deleted with the backup's own activities and retry policies. Started under
// the installation's run workflow id, so it never runs beside a backup: a running run's resources look exactly like
// leftovers.
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  defineQuery,
  isCancellation,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { DigitalOceanActivities, ResourceRef } from '../activities/digitalocean/activities';
import { DOSVOB_OUTCOME, type Outcome } from '../common/search-attributes';
import { ms, retryPolicy } from './activity-options';
import { DELETION_ORDER, deleteInOrder, describeRef } from './deletion';
import { DEFAULT_TIMINGS, type RunProgress, type Timings } from './types';

export interface CleanupInput {
  timings?: Partial<Timings>;
}

export interface CleanupEntry extends ResourceRef {
  deleted: boolean;
  error?: string;
}

export interface CleanupResult {
  leftovers: CleanupEntry[];
  durationMs: number;
  message: string;
}

/** The same query as a backup run's, so `dosvob status` and `cancel` read either: what it deleted is `swept`. */
export const cleanupProgressQuery = defineQuery<RunProgress>('progress');

export async function cleanupWorkflow(input: CleanupInput = {}): Promise<CleanupResult> {
  const t: Timings = { ...DEFAULT_TIMINGS, ...input.timings };
  const started = workflowInfo().startTime.getTime();
  const progress: RunProgress = { phase: 'sweeping', volumes: [], swept: [], deleted: [] };
  setHandler(cleanupProgressQuery, () => progress);
  upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: 'running' satisfies Outcome }]);

  const api = proxyActivities<DigitalOceanActivities>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    heartbeatTimeout: ms(t.apiHeartbeatTimeoutMs),
    retry: retryPolicy(t, t.apiMaximumAttempts),
  });
  // Leftovers cost money: their deletion persists as long as the backup's teardown does.
  const cleanup = proxyActivities<DigitalOceanActivities>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    heartbeatTimeout: ms(t.apiHeartbeatTimeoutMs),
    retry: retryPolicy(t, t.cleanupMaximumAttempts),
  });

  try {
    setCurrentDetails('**finding leftovers** of earlier runs');
    const found = await api.findLeftovers.executeWithOptions({ summary: 'find leftovers of earlier runs' }, [{}]);
    const leftovers: CleanupEntry[] = [...found]
      .sort((a, b) => DELETION_ORDER.indexOf(a.kind) - DELETION_ORDER.indexOf(b.kind) || a.name.localeCompare(b.name))
      .map((r) => ({ ...r, deleted: false }));
    setCurrentDetails(
      leftovers.length === 0
        ? '**finished** — no leftovers of earlier runs'
        : [`**deleting** ${leftovers.length} leftover(s)`, ...leftovers.map((r) => `- ${describeRef(r)}`)].join('\n'),
    );
    const outcome = await deleteInOrder(cleanup, found, progress.swept);
    if (CancellationScope.current().consideredCancelled) throw new CancelledFailure('cleanup cancelled');
    for (const entry of leftovers) {
      const failure = outcome.failed.find((f) => f.ref.kind === entry.kind && f.ref.id === entry.id);
      if (failure) entry.error = failure.error;
      else entry.deleted = true;
    }
    progress.phase = 'finished';
    const failed = leftovers.filter((r) => r.error !== undefined);
    const result: CleanupResult = {
      leftovers,
      durationMs: Date.now() - started,
      message:
        leftovers.length === 0
          ? 'no leftovers of earlier runs'
          : failed.length === 0
            ? `deleted ${leftovers.length} leftover(s) of earlier runs`
            : `${failed.length} of ${leftovers.length} leftover(s) could not be deleted`,
    };
    setCurrentDetails(`**finished** — ${result.message}`);
    if (failed.length > 0) throw ApplicationFailure.nonRetryable(result.message, 'CleanupFailed', result);
    upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: 'ok' satisfies Outcome }]);
    return result;
  } catch (err) {
    progress.phase = 'finished';
    const outcome: Outcome = isCancellation(err) ? 'cancelled' : 'failed';
    upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: outcome }]);
    throw err;
  }
}
