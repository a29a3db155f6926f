// One raw image checked by its filesystems' own checkers: the whole device's filesystem, or each partition's (extracted
// to a sparse temporary file first: neither checker reads at an offset, and a loop device needs privileges a store
// worker should not have). The image is only ever read.
import { execFile } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { readFully, writeSparse } from '../store/fsutil.js';
import { replayExtJournal, runChecker, type CheckResult, type CheckerOptions, type CheckerRun } from './checkers';
import {
  HEAD_BYTES,
  detectFilesystem,
  detectLayout,
  extNeedsRecovery,
  type FsSignature,
  type Partition,
  type ReadAt,
} from './signature';
import { withTempFile } from './temp';

const execFileAsync = promisify(execFile);

export interface FsckPart {
  /** The partition's number; null for a filesystem on the whole device. */
  partition: number | null;
  offset: number;
  length: number;
  /** `ext4`, `xfs`, or what was found instead (`swap space`, `unknown`…). */
  filesystem: string;
  result: CheckResult;
  /** The command run (`e2fsck -fn`), absent when none was. */
  checker?: string;
  exitCode?: number | null;
  verdict: string;
}

export interface FsckReport {
  /** failed: some checker found errors; passed: every checked filesystem is clean; unchecked: nothing could be checked. */
  result: CheckResult;
  layout: 'filesystem' | 'mbr' | 'gpt' | 'unknown';
  parts: FsckPart[];
  /** One line for people: what was checked and the verdict. */
  summary: string;
}

export interface FsckOptions extends CheckerOptions {
  /** Where partitions are extracted to (the backups directory's `.dosvob/.verify`). */
  tempDir: string;
  /** The file is a temporary copy of the check's own: a journal may be replayed in it, not on a further copy. */
  scratch?: boolean;
}

/** Copy [offset, offset + length) of `from` into a new sparse file: zero pages stay holes. */
export async function extractRange(
  from: string,
  offset: number,
  length: number,
  to: string,
  options: { signal?: AbortSignal; onTick?: () => void } = {},
): Promise<void> {
  const src = await open(from, 'r');
  try {
    const dst = await open(to, 'wx');
    try {
      await dst.truncate(length);
      const buf = Buffer.allocUnsafe(4 * 2 ** 20);
      let lastTick = Date.now();
      for (let done = 0; done < length;) {
        options.signal?.throwIfAborted();
        const data = await readFully(src, Math.min(buf.length, length - done), offset + done, buf);
        if (data.length === 0) break;
        await writeSparse(dst, data, done);
        done += data.length;
        if (options.onTick && Date.now() - lastTick >= 1000) {
          lastTick = Date.now();
          options.onTick();
        }
      }
      await dst.sync();
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}

/**
 * A whole image copied for a journal replay: `cp` clones it where the filesystem can (instant, no space) and otherwise
 * copies only its data extents (SEEK_DATA), which reading it through would not.
 */
async function copyImage(from: string, to: string, options: { signal?: AbortSignal; onTick?: () => void }) {
  const tick = options.onTick ? setInterval(options.onTick, 1000) : undefined;
  try {
    await execFileAsync('cp', ['--reflink=auto', '--sparse=always', from, to], { signal: options.signal });
  } finally {
    clearInterval(tick);
  }
}

function unknownPart(partition: number | null, offset: number, length: number, sig: FsSignature | undefined): FsckPart {
  const what = sig?.kind === 'other' ? sig.what : 'no filesystem dosvob recognises';
  return {
    partition,
    offset,
    length,
    filesystem: sig?.kind === 'other' ? what.replace(/ \(.*$/, '') : 'unknown',
    result: 'unchecked',
    verdict: `unchecked: ${what}`,
  };
}

async function checkPart(
  file: string,
  part: Partition | null,
  sizeBytes: number,
  readAt: ReadAt,
  options: FsckOptions,
): Promise<FsckPart> {
  const offset = part?.offset ?? 0;
  const length = part?.length ?? sizeBytes;
  const number = part?.number ?? null;
  const head = await readAt(offset, Math.min(HEAD_BYTES, length));
  const sig = detectFilesystem(head);
  if (sig?.kind !== 'checkable') return unknownPart(number, offset, length, sig);
  const where = number === null ? '' : ` partition ${number}`;
  const label = `${options.label ?? 'image'}${where}`;
  const run = (target: string) => runChecker(sig.fs, target, { ...options, label });
  // A journal to replay (a snapshot of a mounted ext3/4): replayed on a copy, as a mount would, then checked.
  const replay = sig.fs !== 'xfs' && extNeedsRecovery(head);
  const replayThenRun = async (target: string): Promise<CheckerRun> => {
    const unreplayable = await replayExtJournal(target, { ...options, label });
    if (unreplayable !== undefined) {
      return { result: 'failed', checker: 'e2fsck -E journal_only', exitCode: null, verdict: unreplayable };
    }
    const r = await run(target);
    const [first, ...rest] = r.verdict.split('\n');
    return { ...r, verdict: [`${first} after replaying its journal on a copy`, ...rest].join('\n') };
  };
  let checked: CheckerRun;
  if (part === null && !replay) checked = await run(file);
  else if (part === null && options.scratch) checked = await replayThenRun(file);
  else {
    checked = await withTempFile(
      options.tempDir,
      `${number === null ? 'device' : `partition-${number}`}`,
      async (tmp) => {
        if (part === null) await copyImage(file, tmp, options);
        else await extractRange(file, offset, length, tmp, options);
        return replay ? replayThenRun(tmp) : run(tmp);
      },
    );
  }
  return {
    partition: number,
    offset,
    length,
    filesystem: sig.fs,
    result: checked.result,
    checker: checked.checker,
    exitCode: checked.exitCode,
    verdict: checked.verdict,
  };
}

function partName(p: FsckPart): string {
  return `${p.partition === null ? '' : `partition ${p.partition} `}${p.filesystem}`;
}

/** `failed: partition 2 ext4: e2fsck: exit 4 (errors left uncorrected)` and the like. */
export function summarize(result: CheckResult, parts: readonly FsckPart[]): string {
  const head = (p: FsckPart) => `${partName(p)}: ${p.verdict.split('\n')[0]}`;
  if (parts.length === 0) return 'unchecked: the partition table lists no partitions';
  if (result === 'failed')
    return `failed: ${parts
      .filter((p) => p.result === 'failed')
      .map(head)
      .join('; ')}`;
  if (result === 'passed') {
    const unchecked = parts.filter((p) => p.result === 'unchecked');
    return (
      `passed: ${parts
        .filter((p) => p.result === 'passed')
        .map(head)
        .join('; ')}` + (unchecked.length > 0 ? `; not checked: ${unchecked.map(partName).join(', ')}` : '')
    );
  }
  return parts
    .map((p) => {
      const first = p.verdict.split('\n')[0]!;
      // A checker ran but could not judge (an XFS log only a mount replays): say which filesystem, as for a verdict.
      if (!first.startsWith('unchecked')) return `unchecked: ${head(p)}`;
      return `${p.partition === null ? '' : `partition ${p.partition}: `}${first}`;
    })
    .join('; ');
}

/** Check the filesystem(s) of a raw image, read-only. */
export async function fsckImage(file: string, options: FsckOptions): Promise<FsckReport> {
  const sizeBytes = (await stat(file)).size;
  const fh = await open(file, 'r');
  let parts: FsckPart[];
  let layout: FsckReport['layout'];
  try {
    const readAt: ReadAt = (offset, length) => readFully(fh, length, offset);
    const found = await detectLayout(readAt, sizeBytes);
    if (found.kind === 'partitioned') {
      layout = found.table.kind;
      parts = [];
      for (const p of found.table.partitions) parts.push(await checkPart(file, p, sizeBytes, readAt, options));
      for (const e of found.table.extended ?? []) {
        parts.push({
          partition: e.number,
          offset: e.offset,
          length: e.length,
          filesystem: 'extended partition',
          result: 'unchecked',
          verdict: 'unchecked: the logical partitions of an extended partition are not checked',
        });
      }
    } else {
      layout = found.kind;
      parts = [await checkPart(file, null, sizeBytes, readAt, options)];
    }
  } finally {
    await fh.close();
  }
  const result: CheckResult = parts.some((p) => p.result === 'failed')
    ? 'failed'
    : parts.some((p) => p.result === 'passed')
      ? 'passed'
      : 'unchecked';
  return { result, layout, parts, summary: summarize(result, parts) };
}
