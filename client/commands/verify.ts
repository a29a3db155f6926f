// `dosvob verify [VOLUME] [--at TIME | --version ID] [--fsck] [--json]`: a kept version checked on the store's worker,
// by reading every block against its hash, or with --fsck by its filesystem's own checker (read-only; a version that is
// not the newest is restored to a temporary sparse file first). The verdict is recorded with the version: a failed one
// is suspect, which `dosvob versions` shows and retention takes into account. Exit code 0 when nothing checked failed
// (an unknown filesystem is `unchecked`, not failed), 1 when a version failed its check.
import { randomUUID } from 'node:crypto';
import type { VerifyVersionsReport } from '../../activities/verify/activities';
import type { verifyVersionWorkflow } from '../../workflows/verify';
import { ExitCode, UserError } from '../errors';
import { formatTime, table, type Output } from '../output';
import type { Session } from '../session';
import { parseAt } from './restore';
import { asUserError } from './store-request';

export interface VerifyOptions {
  volume?: string;
  at?: string;
  version?: string;
  fsck?: boolean;
}

export function verifyLines(report: VerifyVersionsReport): string[] {
  if (report.results.length === 0) return ['no versions to check'];
  const lines = table(
    ['VOLUME', 'VERSION', 'TIME', 'CHECK', 'RESULT'],
    report.results.map((r) => [
      r.key,
      r.versionId,
      formatTime(new Date(r.time)),
      r.kind === 'fsck' ? `fsck${r.source && r.source !== 'image' ? ` (${r.source})` : ''}` : 'hashes',
      r.result === 'failed' ? `SUSPECT ${r.summary}` : r.summary,
    ]),
  );
  // The checker's own last lines, for the ones that failed: what a person needs to judge the damage.
  for (const r of report.results.filter((x) => x.result === 'failed')) {
    for (const p of r.parts ?? []) {
      if (p.result !== 'failed') continue;
      lines.push('', `${r.key} ${r.versionId}${p.partition === null ? '' : ` partition ${p.partition}`}:`);
      lines.push(...p.verdict.split('\n').map((l) => `  ${l}`));
    }
  }
  return lines;
}

export async function verify(session: Session, out: Output, options: VerifyOptions): Promise<VerifyVersionsReport> {
  if (options.at !== undefined && options.version !== undefined) {
    throw new UserError('give --at TIME or --version ID, not both', ExitCode.badInput);
  }
  if (options.version !== undefined && options.volume === undefined) {
    throw new UserError('--version needs a VOLUME: version ids belong to one volume', ExitCode.badInput);
  }
  const at = options.at === undefined ? undefined : parseAt(options.at);
  const fsck = options.fsck === true;
  out.note(
    `${fsck ? 'checking the filesystem of' : 'reading every block of'} ${options.volume ?? 'every volume'}` +
      `${options.version ? ` version ${options.version}` : at ? ` at ${at}` : ''} on the store's machine...`,
  );
  const report = await session.client.workflow
    .execute<typeof verifyVersionWorkflow>('verifyVersionWorkflow', {
      taskQueue: session.ids.taskQueue,
      workflowId: `${session.ids.workflowId}-verify-${randomUUID().slice(0, 8)}`,
      args: [{ volume: options.volume, versionId: options.version, at, fsck }],
      staticSummary:
        `dosvob verify${options.volume ? ` ${options.volume}` : ''}` +
        (options.version ? ` --version ${options.version}` : at ? ` --at ${at}` : '') +
        (fsck ? ' --fsck: the filesystem checker, read-only' : ': every block against its hash'),
    })
    .catch(asUserError);
  out.json(report);
  for (const line of verifyLines(report)) out.line(line);
  return report;
}
