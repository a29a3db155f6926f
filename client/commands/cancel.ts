// `dosvob cancel`: cancel the running run, wait for its cleanup, and list what the cleanup deleted.
import { CancelledFailure, WorkflowFailedError } from '@temporalio/client';
import type { RunProgress } from '../../workflows/types';
import { runKind, type RunKind } from '../ids';
import type { Output } from '../output';
import { runningRunId } from '../run-state';
import type { Session } from '../session';

export interface CancelOutcome {
  cancelled: boolean;
  workflowId: string;
  runId: string | undefined;
  /** A backup run, or `dosvob cleanup`'s run (which holds the same workflow id). */
  kind: RunKind | undefined;
  /** How the run ended: cancelled, or finished before the cancellation reached it. */
  ended: 'cancelled' | 'completed' | 'failed' | undefined;
  /** What the run's cleanup (and the run before it) deleted; undefined when no worker answered the query. */
  deleted: string[] | undefined;
}

export async function cancel(session: Session, out: Output): Promise<CancelOutcome> {
  const { client, ids } = session;
  const runId = await runningRunId(client, ids.workflowId);
  const outcome: CancelOutcome = {
    cancelled: false,
    workflowId: ids.workflowId,
    runId,
    kind: undefined,
    ended: undefined,
    deleted: undefined,
  };
  if (!runId) {
    out.line('no backup run is in progress');
    out.json(outcome);
    return outcome;
  }
  const run = client.workflow.getHandle(ids.workflowId, runId);
  const description = await run.describe();
  const kind = runKind(description.type);
  outcome.kind = kind;
  const parent = description.parentExecution;
  // A schedule's launcher waits for its run: cancelling the launcher cancels the run too, and ends both as cancelled
  // (cancelling only the run would leave the launcher "failed").
  const target = parent?.workflowId ? client.workflow.getHandle(parent.workflowId, parent.runId ?? undefined) : run;
  await target.cancel();
  out.line(
    kind === 'cleanup'
      ? `cancelling cleanup run ${runId}; waiting for the deletions in flight...`
      : `cancelling ${kind} run ${runId}; waiting for its cleanup to delete what it created...`,
  );
  outcome.cancelled = true;
  try {
    await run.result();
    outcome.ended = 'completed';
  } catch (err) {
    outcome.ended =
      err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure ? 'cancelled' : 'failed';
  }
  // The query works on a closed run too, as long as a worker can replay it.
  const progress = await client
    .withDeadline(Date.now() + 15_000, () => run.query<RunProgress>('progress'))
    .catch(() => undefined);
  // A cleanup run's deletions are all leftovers of earlier runs: `swept`.
  outcome.deleted = kind === 'cleanup' ? progress?.swept : progress?.deleted;
  out.line(
    outcome.ended === 'cancelled'
      ? 'the run is cancelled'
      : `the run ${outcome.ended} before the cancellation reached it`,
  );
  if (!outcome.deleted) out.line('(no worker answered: what the cleanup deleted is in the run history)');
  else if (outcome.deleted.length === 0) out.line('its cleanup had nothing to delete');
  else for (const line of ['its cleanup deleted:', ...outcome.deleted.map((d) => `  ${d}`)]) out.line(line);
  out.json(outcome);
  return outcome;
}
