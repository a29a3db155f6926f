// `dosvob status`: the running run's progress, or else the last run's result.
import { workflowUiLink } from '../connect';
import { runKind, type RunKind } from '../ids';
import { formatTime, type Output } from '../output';
import { describeVolume, RateMeter, summaryLine, viewOf, type RunView } from '../progress';
import { RunReader, runningRunId } from '../run-state';
import { listRuns, type RunSummary } from '../runs';
import type { Session } from '../session';
import { runsTable, versionsMade } from './runs';

export type Status =
  | {
      running: true;
      /** A backup run, or `dosvob cleanup`'s run (which holds the same workflow id). */
      kind: RunKind;
      workflowId: string;
      runId: string;
      start: string;
      launchedBy: string | undefined;
      /** Undefined while the run has not answered its progress query yet. */
      progress: (RunView & { swept: string[]; deleted: string[] }) | undefined;
      link: string | undefined;
    }
  | { running: false; last: RunSummary | undefined };

export async function status(session: Session, out: Output): Promise<Status> {
  const { client, ids } = session;
  const runId = await runningRunId(client, ids.workflowId);
  if (runId) {
    const state = await new RunReader(client, client.workflow.getHandle(ids.workflowId, runId)).read();
    const view = viewOf(state, new RateMeter());
    const link = workflowUiLink(session.uiUrl, session.namespace, ids.workflowId, runId);
    const kind = runKind(state.type);
    const result: Status = {
      running: true,
      kind,
      workflowId: ids.workflowId,
      runId,
      start: state.startTime.toISOString(),
      launchedBy: state.parent?.workflowId,
      progress:
        view && state.progress ? { ...view, swept: state.progress.swept, deleted: state.progress.deleted } : undefined,
      link,
    };
    out.json(result);
    out.line(
      `${kind} run ${runId} in progress since ${formatTime(state.startTime)}${state.parent ? ` (started by ${state.parent.workflowId})` : ''}`,
    );
    if (kind === 'cleanup') {
      const swept = state.progress?.swept ?? [];
      out.line(swept.length === 0 ? '  nothing deleted yet' : `  deleted so far: ${swept.join(', ')}`);
    } else if (view) {
      out.line(summaryLine(view));
      for (const v of view.volumes) out.line(`  ${describeVolume(v)}`);
    } else {
      out.line('  (the run has not reported its progress yet)');
    }
    if (link) out.line(`watch it at ${link}`);
    return result;
  }
  const [last] = await listRuns(client, ids, 1);
  const result: Status = { running: false, last };
  out.json(result);
  if (!last) {
    out.line('no backup run is in progress, and none has run yet');
  } else {
    out.line('no backup run is in progress; the last one:');
    for (const line of runsTable([last])) out.line(`  ${line}`);
    for (const line of versionsMade([last])) out.line(`  versions: ${line.slice(line.indexOf(': ') + 2)}`);
    if (last.message) out.line(`  ${last.message}`);
  }
  return result;
}
