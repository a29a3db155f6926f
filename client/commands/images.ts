// `dosvob images`: the local backups, one line per volume, checked by the worker that holds them. Also finishes an
// update a crash interrupted while it was being written into an image; with --verify, reads every image in full and
// checks each block against the hashes recorded when it was received.
import { randomUUID } from 'node:crypto';
import type { VerifyChunksResult } from '../../activities/store';
import type { ImageVerifyReport, Subset } from '../../activities/store-ops/verify';
import type { imagesWorkflow } from '../../workflows/images';
import type { verifyStoreWorkflow } from '../../workflows/versions';
import { formatBytes } from '../../workflows/util';
import { formatTime, table, type Output } from '../output';
import type { Session } from '../session';
import { asUserError } from './store-request';

export interface ImagesOutcome {
  images: ImageVerifyReport[];
  /** With --verify: the saved chunks checked, those found bad (moved aside) and the versions they break. */
  chunks?: VerifyChunksResult;
  /** With --subset: the slice checked. */
  subset?: Subset | null;
  /**
   * 0: every image is ok (and with --verify every chunk and version); 1: one is not (corrupt, busy, missing, foreign
   * format, changed outside dosvob, a bad chunk, a version missing a chunk).
   */
  exitCode: number;
}

/** The blocks a --subset run read, when not all of them. */
function sliceText(r: ImageVerifyReport): string {
  const v = r.verifiedBlocks;
  if (!v || r.sizeBytes === undefined || !r.blockSize) return '';
  const all = Math.ceil(r.sizeBytes / r.blockSize);
  if (v.from === 0 && v.to === all) return '';
  return v.to > v.from ? ` (${v.from}-${v.to - 1} of ${all})` : ` (none of ${all} in this slice)`;
}

function stateText(r: ImageVerifyReport): string {
  const notes = [
    r.finishedInterruptedUpdate ? 'finished an interrupted update' : '',
    r.stagedTransfer ? 'interrupted transfer staged (the next sync resumes it)' : '',
    r.verify && r.state === 'ok' ? `verified ${r.verify.blocksChecked} blocks${sliceText(r)}` : '',
    r.detail ?? '',
  ].filter(Boolean);
  return notes.length > 0 ? `${r.state}: ${notes.join('; ')}` : r.state;
}

export function imagesTable(images: readonly ImageVerifyReport[]): string[] {
  return table(
    ['VOLUME', 'SIZE', 'DATA', 'LAST SYNC', 'SNAPSHOT', 'STATE'],
    images.map((r) => [
      r.volumeName,
      r.sizeBytes === undefined ? '-' : formatBytes(r.sizeBytes),
      r.allocatedBytes === undefined ? '-' : formatBytes(r.allocatedBytes),
      r.lastSyncAt ? formatTime(new Date(r.lastSyncAt)) : '-',
      r.snapshotCreatedAt ? formatTime(new Date(r.snapshotCreatedAt)) : (r.snapshotId ?? '-'),
      stateText(r),
    ]),
  );
}

/** What --verify found in the chunk store, in lines. */
export function chunksLines(chunks: VerifyChunksResult, subset: Subset | null | undefined): string[] {
  const slice = subset ? ` (slice ${subset.n}/${subset.of})` : '';
  const lines = [
    `saved chunks${slice}: ${chunks.checked} checked, ` +
      (chunks.bad.length === 0 ? 'all match their names' : `${chunks.bad.length} damaged`),
  ];
  for (const b of chunks.bad) lines.push(`  BAD ${b.hash}: ${b.reason}; moved aside to ${b.movedTo}`);
  if (chunks.brokenVersions.length === 0) lines.push('kept versions: every one has every chunk it needs');
  for (const v of chunks.brokenVersions) {
    lines.push(
      `  BROKEN ${v.key} version ${v.versionId}: ` +
        (v.damaged ??
          `misses ${v.missingChunks.length} chunk(s) (${v.missingChunks.slice(0, 3).join(', ')}${v.missingChunks.length > 3 ? ', ...' : ''})`) +
        ': it cannot be restored byte-exact',
    );
  }
  return lines;
}

export async function images(
  session: Session,
  out: Output,
  options: { verify: boolean; subset?: Subset },
): Promise<ImagesOutcome> {
  const workflowId = `${session.ids.workflowId}-images-${randomUUID().slice(0, 8)}`;
  let outcome: ImagesOutcome;
  if (options.verify) {
    const slice = options.subset ? ` slice ${options.subset.n}/${options.subset.of}` : '';
    out.note(`verifying${slice}: reading the images and saved chunks...`);
    const report = await session.client.workflow
      .execute<typeof verifyStoreWorkflow>('verifyStoreWorkflow', {
        taskQueue: session.ids.taskQueue,
        workflowId,
        args: [{ subset: options.subset }],
        staticSummary:
          `dosvob images --verify${options.subset ? ` --subset ${options.subset.n}/${options.subset.of}` : ''}: ` +
          'images against their block hashes, saved chunks against their names, versions for their chunks',
      })
      .catch(asUserError);
    outcome = { images: report.images, chunks: report.chunks, subset: report.subset, exitCode: report.exitCode };
  } else {
    const reports = await session.client.workflow.execute<typeof imagesWorkflow>('imagesWorkflow', {
      taskQueue: session.ids.taskQueue,
      workflowId,
      args: [{ verify: false }],
      staticSummary: 'dosvob images: the local backups and their state',
    });
    outcome = { images: reports, exitCode: reports.every((r) => r.state === 'ok') ? 0 : 1 };
  }
  out.json(outcome);
  if (outcome.images.length === 0) out.line('no images in the backups directory yet');
  else for (const line of imagesTable(outcome.images)) out.line(line);
  if (outcome.chunks) for (const line of chunksLines(outcome.chunks, outcome.subset)) out.line(line);
  return outcome;
}
