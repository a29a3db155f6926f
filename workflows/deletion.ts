// Deleting ephemeral resources in DigitalOcean's order, shared by the backup's sweep and teardown and by the cleanup
// workflow: droplets first (which detaches their volumes), then volumes (409 while still attached: retried by the
// activity's retry policy), snapshots, keys. Workflow code.
import { log } from '@temporalio/workflow';
import { reason } from './util';
import type { ActivityInterfaceFor } from '@temporalio/workflow';
import type { DigitalOceanActivities, Deletion, ResourceRef } from '../activities/digitalocean/activities';

export const DELETION_ORDER: readonly ResourceRef['kind'][] = ['droplet', 'volume', 'snapshot', 'ssh_key'];

export type Deleter = Pick<ActivityInterfaceFor<DigitalOceanActivities>, 'deleteResource'>;

export function describeRef(r: ResourceRef): string {
  return `${r.kind.replace('_', ' ')} ${r.name || r.id}`;
}

/**
 * A delete's result, with the time its answer came (billing ends there), never later than the workflow's now: the
 * worker's clock may run ahead. Workers before the answer time returned the bare outcome, which replays here.
 */
export function deletionOf(result: Deletion | Deletion['outcome'], now: number): Deletion {
  if (typeof result === 'string') return { outcome: result, answeredAtMs: now };
  return { outcome: result.outcome, answeredAtMs: Math.min(result.answeredAtMs, now) };
}

export interface DeletionOutcome {
  /** Deleted now, or found already gone. */
  gone: ResourceRef[];
  /** When each of `gone` was answered (deletionOf), in the same order. */
  goneAt: number[];
  /** Still there after every retry the policy allowed. */
  failed: Array<{ ref: ResourceRef; error: string }>;
}

/**
 * Delete `refs` kind by kind in DELETION_ORDER, each kind's at once. What was deleted (not found already gone) is
 * recorded in `into` as `describeRef` text; a resource that cannot be deleted is logged and left for the next sweep.
 */
export async function deleteInOrder(
  deleter: Deleter,
  refs: readonly ResourceRef[],
  into: string[],
): Promise<DeletionOutcome> {
  const outcome: DeletionOutcome = { gone: [], goneAt: [], failed: [] };
  for (const kind of DELETION_ORDER) {
    await Promise.all(
      refs
        .filter((r) => r.kind === kind)
        .map(async (r) => {
          try {
            const result = deletionOf(
              await deleter.deleteResource.executeWithOptions({ summary: `delete ${describeRef(r)}` }, [r]),
              Date.now(),
            );
            if (result.outcome === 'deleted') into.push(describeRef(r));
            outcome.gone.push(r);
            outcome.goneAt.push(result.answeredAtMs);
          } catch (err) {
            outcome.failed.push({ ref: r, error: reason(err) });
            log.error('could not delete a resource; the next run will sweep it', {
              resource: describeRef(r),
              error: reason(err),
            });
          }
        }),
    );
  }
  return outcome;
}
