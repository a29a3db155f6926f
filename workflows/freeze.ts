// Consistent snapshots: a volume's hook (conf.json `hooks`) freezes its filesystem on the droplet that mounts it, the
// snapshot is created, and the filesystem is thawed at once — before the copy volume or anything else. Workflow code.
//
// The thaw is owed from the moment a freeze was attempted (an attempt cut off may have frozen): it runs on success,
// on failure and on cancellation, non-cancellable and retried. And should this workflow never get that far (its
// worker killed, the server gone), the droplet thaws by itself: the freeze armed a dead-man timer there first
// (activities/hooks/scripts.ts).
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  proxyActivities,
} from '@temporalio/workflow';
import type { HookActivities } from '../activities/hooks/activities';
import type { FreezeInput, HookSummary, ThawResult } from '../activities/hooks/types';
import { HookFailureTypes } from '../common/hook-failures';
import { ms, retryPolicy } from './activity-options';
import type { Timings } from './types';
import { reason } from './util';

export interface Consistency {
  /** The snapshot was created while the hook held the filesystem frozen (and dosvob, not the timer, thawed it). */
  frozen: boolean;
  /** In words, for the run's result. */
  note: string;
}

export interface FreezeContext {
  timings: Timings;
  runId: string;
  volumeName: string;
  /** The volume's step, for the run's progress. */
  onStep?: (step: 'freeze' | 'snapshot' | 'thaw') => void;
}

/** The patch of backupWorkflow that snapshots a volume with a hook inside its freeze. */
export const FREEZE_HOOKS = 'freeze-hooks';

/** Attempts of a freeze: a retried freeze freezes again (after undoing whatever the cut-off attempt did). */
const FREEZE_ATTEMPTS = 3;

function proxies(t: Timings, hook: HookSummary) {
  const freeze = proxyActivities<HookActivities>({
    startToCloseTimeout: ms((hook.maxFreezeSeconds + 60) * 1000),
    retry: retryPolicy(t, FREEZE_ATTEMPTS),
    // Waited for even when the run is cancelled: the thaw must come after the freeze, never race it.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
  const thaw = proxyActivities<HookActivities>({
    // The thaw waits up to a minute for a timer's thaw already under way.
    startToCloseTimeout: ms(180_000),
    retry: retryPolicy(t, t.cleanupMaximumAttempts),
  });
  // After a failed freeze the thaw is a precaution (the freeze script undoes a failed freeze itself, and the timer is
  // armed): a droplet that could not be reached for the freeze must not hold the volume for the full thaw budget.
  const thawAfterFailedFreeze = proxyActivities<HookActivities>({
    startToCloseTimeout: ms(180_000),
    retry: retryPolicy(t, FREEZE_ATTEMPTS),
  });
  return { freeze, thaw, thawAfterFailedFreeze };
}

/** The volume's hook, resolved on the worker (glob match on the name); null when it has none. */
export async function hookForVolume(t: Timings, volumeName: string): Promise<HookSummary | null> {
  const lookup = proxyActivities<HookActivities>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    retry: retryPolicy(t, t.apiMaximumAttempts),
  });
  return lookup.resolveVolumeHook.executeWithOptions({ summary: `find the freeze hook of ${volumeName}` }, [
    { volumeName },
  ]);
}

function failureType(err: unknown): string | undefined {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure
    ? (err.cause.type ?? undefined)
    : undefined;
}

/** A refusal happens before any command runs on the droplet: nothing can be frozen, no thaw is owed. */
function refusedBeforeRunning(err: unknown): boolean {
  const type = failureType(err);
  return type === HookFailureTypes.refused || type === HookFailureTypes.hostKeyMismatch;
}

/**
 * Run `fn` (the snapshot's creation) inside the volume's freeze. No hook: `fn` alone, consistency undefined. A freeze
 * that fails throws (the volume fails with the hook's message) unless the hook says `hooks_required: false`: then `fn`
 * runs unfrozen and the consistency says why.
 */
export async function withFreeze<T>(
  hook: HookSummary | null,
  ctx: FreezeContext,
  fn: () => Promise<T>,
): Promise<{ value: T; consistency: Consistency | undefined }> {
  if (!hook) return { value: await fn(), consistency: undefined };
  const { freeze, thaw, thawAfterFailedFreeze } = proxies(ctx.timings, hook);
  const input: FreezeInput = { volumeName: ctx.volumeName, hookId: hook.hookId, runId: ctx.runId };
  const where = `droplet ${hook.droplet}`;
  let owed = false;
  let thawed: ThawResult | undefined;
  let thawError: string | undefined;
  let unfrozen: string | undefined;
  let freezeFailed = false;

  const thawNow = async (): Promise<void> => {
    owed = false;
    ctx.onStep?.('thaw');
    try {
      thawed = await CancellationScope.nonCancellable(() =>
        (freezeFailed ? thawAfterFailedFreeze : thaw).thawVolume.executeWithOptions(
          { summary: `thaw ${ctx.volumeName} on ${where}` },
          [input],
        ),
      );
    } catch (err) {
      thawError = reason(err);
      log.error('thaw failed: the droplet thaws by its own timer at the latest', {
        volume: ctx.volumeName,
        maxFreezeSeconds: hook.maxFreezeSeconds,
        error: thawError,
      });
    }
  };

  let value: T;
  try {
    ctx.onStep?.('freeze');
    try {
      owed = true;
      await freeze.freezeVolume.executeWithOptions(
        { summary: `freeze ${ctx.volumeName} on ${where} (at most ${hook.maxFreezeSeconds} s)` },
        [input],
      );
    } catch (err) {
      if (isCancellation(err)) throw err;
      freezeFailed = true;
      if (refusedBeforeRunning(err)) owed = false;
      if (hook.hooksRequired) throw err;
      unfrozen = reason(err);
      // Undo a half-done freeze before snapshotting without one.
      if (owed) await thawNow();
    }
    ctx.onStep?.('snapshot');
    value = await fn();
  } finally {
    if (owed) await thawNow();
  }
  return { value, consistency: describe(hook, unfrozen, thawed, thawError) };
}

function describe(
  hook: HookSummary,
  unfrozen: string | undefined,
  thawed: ThawResult | undefined,
  thawError: string | undefined,
): Consistency {
  if (unfrozen !== undefined) {
    return {
      frozen: false,
      note: `crash-consistent: the freeze hook failed and hooks_required is false, so the snapshot was taken unfrozen (${unfrozen})`,
    };
  }
  if (thawError !== undefined) {
    return {
      frozen: false,
      note:
        `not known to be consistent: the thaw failed (${thawError}); the droplet's timer thaws it ` +
        `${hook.maxFreezeSeconds} s after the freeze`,
    };
  }
  if (thawed?.thawedBy === 'timer') {
    return {
      frozen: false,
      note:
        `crash-consistent: the droplet's timer thawed the filesystem before dosvob did (max_freeze_seconds ` +
        `${hook.maxFreezeSeconds} s), perhaps before the snapshot was taken`,
    };
  }
  if (thawed?.thawedBy === 'none') {
    return { frozen: false, note: 'not known to be consistent: the thaw found no freeze in place on the droplet' };
  }
  return { frozen: true, note: `frozen on droplet ${hook.droplet} during the snapshot` };
}
