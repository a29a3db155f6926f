// `dosvob runs`: recent runs with their outcome, duration, bytes transferred and estimated cost.
import { formatBytes } from '../../workflows/util';
import { formatDuration, formatTime, table, type Output } from '../output';
import { listRuns, type RunSummary } from '../runs';
import type { Session } from '../session';
import type { VolumeCheckOutcome } from '../../workflows/types';

export function runsTable(runs: readonly RunSummary[]): string[] {
  return table(
    ['START', 'KIND', 'OUTCOME', 'DURATION', 'VOLUMES', 'TRANSFERRED', 'COST', 'RUN'],
    runs.map((r) => [
      formatTime(new Date(r.start)),
      r.kind,
      r.outcome,
      r.durationMs === undefined ? '-' : formatDuration(r.durationMs),
      r.volumes === undefined ? '-' : r.volumesFailed ? `${r.volumes} (${r.volumesFailed} failed)` : String(r.volumes),
      r.bytesTransferred === undefined ? '-' : formatBytes(r.bytesTransferred),
      r.estimatedCostUsd === undefined ? '-' : `$${r.estimatedCostUsd.toFixed(4)}`,
      r.outcome === 'skipped' ? r.workflowId : r.runId,
    ]),
  );
}

/** `; pruned 2 old version(s), freed 40 MiB` (or why pruning failed), after the versions a run made. */
function pruningText(p: RunSummary['pruning']): string {
  if (!p) return '';
  if (p.error) return `; pruning failed: ${p.error}`;
  return `; pruned ${p.versionsRemoved} old version(s), freed ${formatBytes(p.bytesFreed)}`;
}

/** ` SUSPECT (fsck failed: ext4: e2fsck: exit 4 …)` or ` (fsck passed)` after a version a run checked. */
function checkText(c: VolumeCheckOutcome | undefined): string {
  if (!c) return '';
  return c.result === 'failed' ? ` SUSPECT (fsck ${c.summary})` : ` (fsck ${c.result})`;
}

/** The versions runs made, one line per run: `RUN: web-data (nyc3) 20261202T134500Z-1a2b3c, ...; pruned …`. */
export function versionsMade(runs: readonly RunSummary[]): string[] {
  return runs
    .filter((r) => r.versions?.length)
    .map(
      (r) =>
        `${r.runId}: ${r.versions!.map((v) => `${v.volume} (${v.region}) ${v.version}${checkText(v.check)}`).join(', ')}${pruningText(r.pruning)}`,
    );
}

export async function runs(session: Session, out: Output, options: { limit: number }): Promise<RunSummary[]> {
  const list = await listRuns(session.client, session.ids, options.limit);
  out.json(list);
  if (list.length === 0) out.line('no backup runs yet');
  else for (const line of runsTable(list)) out.line(line);
  const made = list.filter((r) => r.versions?.length);
  if (made.length > 0) out.line('');
  for (const line of versionsMade(made)) out.line(line);
  return list;
}
