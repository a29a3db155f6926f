// `dosvob prune [--dry-run]`: per volume, the versions retention keeps (and the rules keeping each) and those it
// removes, then what garbage collection freed. `dosvob versions protect|unprotect VOLUME VERSION`. Both run as
// workflows whose activity is on the store's task queue (the worker holding the backups and its conf.json's policy).
import { randomUUID } from 'node:crypto';
import type { PruneReport, SetProtectedResult, VersionVerdict } from '../../activities/retention/types';
import type { protectVersionWorkflow, pruneWorkflow } from '../../workflows/prune';
import { formatBytes } from '../../workflows/util';
import type { Output } from '../output';
import type { Session } from '../session';
import { asUserError } from './store-request';

export interface PruneOutcomeCli {
  report: PruneReport;
  /** 0: done; 1: a store or the garbage collection failed. */
  exitCode: number;
}

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** `2026-11-30 Mon 04:00` in UTC, the zone retention's periods use by default. */
export function formatVersionTime(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${WEEKDAYS[d.getUTCDay()]} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`
  );
}

/** The version's id, then the README's worked example's columns: time, keep or remove, the rules keeping it. */
function verdictLine(v: VersionVerdict): string {
  return `  ${v.versionId}  ${formatVersionTime(v.time)}  ${v.keep ? 'keep  ' : 'remove'}  ${v.reasons.join(', ')}`.trimEnd();
}

export function pruneLines(report: PruneReport): string[] {
  const lines = [`retention: ${report.policy}${report.dryRun ? ' (dry run: nothing is changed)' : ''}`];
  if (report.stores.length === 0) lines.push('no backups in the backups directory yet');
  for (const s of report.stores) {
    const state = s.error ? `failed: ${s.error}` : s.skipped ? `skipped: ${s.skipped}` : '';
    const counts = `keeps ${s.kept}, ${report.dryRun ? 'would remove' : 'removed'} ${s.removed.length}`;
    lines.push(`${s.key}: ${state || counts}`);
    for (const v of s.versions ?? []) lines.push(verdictLine(v));
  }
  const gc = report.gc;
  if (gc) {
    const verb = gc.dryRun ? 'would remove' : 'removed';
    lines.push(
      `garbage collection: ${verb} ${gc.chunksRemoved} of ${gc.chunksBefore} chunks (${formatBytes(gc.bytesFreed)})` +
        (gc.tmpRemoved > 0 ? ` and ${gc.tmpRemoved} interrupted save(s) (${formatBytes(gc.tmpBytesFreed)})` : '') +
        `; ${gc.markedChunks} needed by kept versions` +
        (gc.youngUnneeded > 0 ? `, ${gc.youngUnneeded} unneeded but too recent to remove yet` : ''),
    );
  }
  if (report.gcError) lines.push(`garbage collection failed: ${report.gcError}`);
  return lines;
}

export async function prune(session: Session, out: Output, options: { dryRun: boolean }): Promise<PruneOutcomeCli> {
  const report = await session.client.workflow.execute<typeof pruneWorkflow>('pruneWorkflow', {
    taskQueue: session.ids.taskQueue,
    workflowId: `${session.ids.workflowId}-prune-${randomUUID().slice(0, 8)}`,
    args: [{ dryRun: options.dryRun }],
    staticSummary: options.dryRun
      ? 'dosvob prune --dry-run: what retention would keep and remove'
      : 'dosvob prune: remove versions retention does not keep, then collect garbage',
  });
  const outcome = { report, exitCode: report.gcError || report.stores.some((s) => s.error) ? 1 : 0 };
  out.json(outcome);
  for (const line of pruneLines(report)) out.line(line);
  return outcome;
}

export async function versionsProtect(
  session: Session,
  out: Output,
  options: { volume: string; version: string; protect: boolean },
): Promise<SetProtectedResult> {
  const result = await session.client.workflow
    .execute<typeof protectVersionWorkflow>('protectVersionWorkflow', {
      taskQueue: session.ids.taskQueue,
      workflowId: `${session.ids.workflowId}-protect-${randomUUID().slice(0, 8)}`,
      args: [{ volume: options.volume, version: options.version, protected: options.protect }],
      staticSummary: `dosvob versions ${options.protect ? 'protect' : 'unprotect'} ${options.volume} ${options.version}`,
    })
    .catch(asUserError);
  out.json(result);
  const state = result.protected ? 'protected (never pruned)' : 'not protected';
  out.line(`${result.key} ${result.versionId}: ${result.unchanged ? 'already ' : ''}${state}`);
  return result;
}
