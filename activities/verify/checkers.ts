// The filesystems' own checkers, run read-only on an image file: `e2fsck -fn` (forced, answers "no" to every fix, opens
// the file read-only) and `xfs_repair -n -f` (no-modify mode, the target is a file). Their exit code is the verdict;
// the last lines of their output say why.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { CheckableFs } from './signature';

export type CheckResult = 'passed' | 'failed' | 'unchecked';

export interface CheckerRun {
  result: CheckResult;
  /** The command as run (without the file), e.g. `e2fsck -fn`. */
  checker: string;
  exitCode: number | null;
  /** The exit code in words and the last lines of the checker's output (or why it was not run). */
  verdict: string;
}

export interface CheckerOptions {
  /** Directories to find the checkers in; default $PATH plus the sbin directories a non-root PATH lacks. */
  searchPath?: readonly string[];
  signal?: AbortSignal;
  /** Called every second while the checker runs (the activity's heartbeat). */
  onTick?: () => void;
  /** Replaces the file's path in the verdict (a temporary file's name means nothing to a reader). */
  label?: string;
}

interface Checker {
  binary: string;
  args: (file: string) => string[];
  /** The verdict of an exit code (and the output): or an error of the run itself (a thrown Error). */
  judge: (code: number, output: string) => { result: CheckResult; words: string };
}

const E2FSCK_BITS: [number, string][] = [
  [1, 'errors corrected'],
  [2, 'reboot needed'],
  [4, 'errors left uncorrected'],
  [8, 'operational error'],
  [16, 'usage error'],
  [32, 'cancelled'],
  [128, 'shared library error'],
];

const E2FSCK: Checker = {
  binary: 'e2fsck',
  args: (file) => ['-fn', file],
  judge(code) {
    if (code === 0) return { result: 'passed', words: 'no errors' };
    if (code & (16 | 32 | 128)) throw new Error(`e2fsck exited with ${code} (${e2fsckWords(code)})`);
    // 8 alone: it could not read the filesystem it was given (a superblock or group descriptors it cannot use).
    return { result: 'failed', words: e2fsckWords(code) };
  },
};

function e2fsckWords(code: number): string {
  return E2FSCK_BITS.filter(([bit]) => code & bit)
    .map(([, w]) => w)
    .join(', ');
}

const XFS_REPAIR: Checker = {
  binary: 'xfs_repair',
  args: (file) => ['-n', '-f', file],
  judge(code, output) {
    if (code === 0) return { result: 'passed', words: 'no corruption found' };
    // A snapshot of a mounted XFS: its log holds changes that only a mount replays, and -n ignores them, so what it
    // finds may be nothing but those (xfs_repair says as much). Neither passed nor failed.
    if (code === 1 && /valuable metadata changes in a log/.test(output)) {
      return {
        result: 'unchecked',
        words: 'its log holds changes only a mount replays: the inconsistencies found may be spurious',
      };
    }
    return { result: 'failed', words: code === 1 ? 'corruption found' : `exit status ${code}` };
  },
};

export const CHECKERS: Record<CheckableFs, Checker> = { ext2: E2FSCK, ext3: E2FSCK, ext4: E2FSCK, xfs: XFS_REPAIR };

export function defaultSearchPath(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs = (env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(d)) dirs.push(d);
  return dirs;
}

export async function findBinary(name: string, searchPath: readonly string[]): Promise<string | undefined> {
  for (const dir of searchPath) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The last `n` lines worth reading: not blank, not the checker's version banner. */
export function lastLines(output: string, n = 8): string[] {
  const lines = output
    .split(/\r?\n/)
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '' && !/^(e2fsck|xfs_repair) (version )?\d/.test(l));
  return lines.slice(-n).map((l) => (l.length > 240 ? `${l.slice(0, 237)}...` : l));
}

/**
 * Replay an ext3/4 journal (`e2fsck -E journal_only -y`), as mounting would, on a temporary copy: never on an image.
 * Returns undefined when done, or why it could not be.
 */
export async function replayExtJournal(file: string, options: CheckerOptions = {}): Promise<string | undefined> {
  const binary = await findBinary('e2fsck', options.searchPath ?? defaultSearchPath());
  if (!binary) return "e2fsck is not installed on the store's machine";
  const { code, output } = await spawnChecker(binary, ['-E', 'journal_only', '-y', file], options);
  if (code === null || code & ~1) {
    const shown = options.label ? output.split(file).join(options.label) : output;
    return [`e2fsck -E journal_only: exit ${code ?? 'killed'}`, ...lastLines(shown)].join('\n');
  }
  return undefined;
}

/** Output kept from a checker: its end is what matters, and a damaged filesystem can make it very long. */
const KEEP_OUTPUT = 64 * 1024;

async function spawnChecker(
  binary: string,
  args: string[],
  options: CheckerOptions,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  options.signal?.throwIfAborted();
  let output = '';
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      const child = spawn(binary, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        // No config file, no pager, no locale surprises in the verdict.
        env: { PATH: process.env.PATH ?? '', LANG: 'C', LC_ALL: 'C', E2FSCK_CONFIG: '/dev/null' },
        signal: options.signal,
        killSignal: 'SIGKILL',
      });
      const keep = (d: Buffer) => {
        output = (output + d.toString('utf8')).slice(-KEEP_OUTPUT);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const tick = options.onTick ? setInterval(options.onTick, 1000) : undefined;
      child.once('error', (err) => {
        clearInterval(tick);
        reject(err);
      });
      child.once('close', (c, s) => {
        clearInterval(tick);
        resolve({ code: c, signal: s });
      });
    },
  );
  options.signal?.throwIfAborted();
  return { code, signal, output };
}

/** Run the checker of `fs` on `file`, read-only. A checker that is not installed makes the result `unchecked`. */
export async function runChecker(fs: CheckableFs, file: string, options: CheckerOptions = {}): Promise<CheckerRun> {
  const checker = CHECKERS[fs];
  const command = `${checker.binary} ${checker.args('').join(' ').trim()}`;
  const binary = await findBinary(checker.binary, options.searchPath ?? defaultSearchPath());
  if (!binary) {
    return {
      result: 'unchecked',
      checker: command,
      exitCode: null,
      verdict: `${checker.binary} is not installed on the store's machine (install e2fsprogs / xfsprogs)`,
    };
  }
  const { code, signal, output } = await spawnChecker(binary, checker.args(file), options);
  if (code === null) throw new Error(`${checker.binary} was killed by ${signal ?? 'a signal'}`);
  const { result, words } = checker.judge(code, output);
  const shown = options.label ? output.split(file).join(options.label) : output;
  return {
    result,
    checker: command,
    exitCode: code,
    verdict: [`${checker.binary}: exit ${code} (${words})`, ...lastLines(shown)].join('\n'),
  };
}
