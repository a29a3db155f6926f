// `dosvob versions [VOLUME]`: the kept versions, oldest first, read by the worker that holds the backups: when, from
// which snapshot and run, how much changed, what each one alone costs, and what the store costs against its images.
import { randomUUID } from 'node:crypto';
import type { VersionCheck } from '../../activities/store';
import type { VersionsReport } from '../../activities/store-ops/versions-report';
import type { versionsWorkflow } from '../../workflows/versions';
import { formatBytes } from '../../workflows/util';
import { formatTime, table, type Output } from '../output';
import type { Session } from '../session';
import { asUserError } from './store-request';

/** `SUSPECT`, then each kind's latest verdict (`fsck failed: …`); a report from an older worker has no checks. */
function checkNotes(v: { suspect?: boolean; checks?: readonly VersionCheck[] }): string[] {
  const notes = (v.checks ?? []).map(
    (c) => `${c.kind} ${(c.detail ?? c.result ?? (c.ok ? 'passed' : 'failed')).split('\n')[0]}`,
  );
  return v.suspect ? ['SUSPECT', ...notes] : notes;
}

export function versionsTable(report: VersionsReport): string[] {
  const lines: string[] = [];
  for (const s of report.stores) {
    if (lines.length > 0) lines.push('');
    lines.push(`${s.name}${s.region ? ` (${s.region})` : ''}${s.key !== s.name ? `, store ${s.key}` : ''}:`);
    if (s.versions.length === 0) {
      lines.push('  no versions yet');
      continue;
    }
    const rows = table(
      ['VERSION', 'TIME', 'SNAPSHOT', 'RUN', 'CHANGED', 'ALONE', 'NOTE'],
      s.versions.map((v) => [
        v.versionId,
        formatTime(new Date(v.time)),
        v.snapshotId ?? '-',
        v.runId ? v.runId.slice(0, 8) : '-',
        v.blocksChanged === null ? '-' : `${v.blocksChanged}/${v.blockCount}`,
        v.newest ? 'image' : formatBytes(v.uniqueBytes),
        [
          v.newest ? 'newest' : '',
          v.protected ? 'protected' : '',
          v.frozen ? 'frozen' : '',
          v.origin !== 'sync' ? v.origin : '',
          v.damaged ?? '',
          ...checkNotes(v),
        ]
          .filter(Boolean)
          .join(', '),
      ]),
    );
    lines.push(...rows.map((r) => `  ${r}`));
  }
  const u = report.usage;
  const overhead = u.imageBytes > 0 ? ` (+${(((u.totalBytes - u.imageBytes) / u.imageBytes) * 100).toFixed(1)} %)` : '';
  lines.push(
    '',
    `store: ${formatBytes(u.totalBytes)} on disk${overhead} against ${formatBytes(u.imageBytes)} of images ` +
      `(${formatBytes(u.imageApparentBytes)} apparent): saved blocks ${formatBytes(u.chunkBytes)} in ${u.chunkCount} ` +
      `chunks` +
      (u.unreferencedChunks > 0
        ? ` (${u.unreferencedChunks} no longer needed, ${formatBytes(u.unreferencedBytes)}, until garbage collection)`
        : '') +
      `, manifests ${formatBytes(u.manifestBytes)}`,
  );
  return lines;
}

export async function versions(session: Session, out: Output, options: { volume?: string }): Promise<VersionsReport> {
  const report = await session.client.workflow
    .execute<typeof versionsWorkflow>('versionsWorkflow', {
      taskQueue: session.ids.taskQueue,
      workflowId: `${session.ids.workflowId}-versions-${randomUUID().slice(0, 8)}`,
      args: [{ volume: options.volume }],
      staticSummary: `dosvob versions${options.volume ? ` ${options.volume}` : ''}: the kept versions and what they cost`,
    })
    .catch(asUserError);
  out.json(report);
  if (report.stores.length === 0) out.line('no backups in the backups directory yet');
  else for (const line of versionsTable(report)) out.line(line);
  return report;
}
