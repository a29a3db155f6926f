#!/usr/bin/env node
// The `dosvob` command line. Every command prints one clear line on error and exits 0 (done), 1 (a volume failed,
// or something outside failed) or 2 (bad input or configuration). Read commands take --json.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { Writable } from 'node:stream';
import type { Config } from '../common/config';
import { ConfigError } from '../common/config-error';
import type { BackupInput } from '../workflows/types';
import type { WorkerRole } from '../worker/worker';
import type { ScheduleAction } from './commands/schedule';
import { lazy } from './lazy';
import { createOutput, type Output } from './output';
import type { OpenSession, OpenSessionOptions } from './session';

// Everything heavy (Temporal's client and worker, ssh2, the DigitalOcean client) loads with the command that uses it,
// so `dosvob --help` starts at once (lazy.ts).
/* eslint-disable @typescript-eslint/no-require-imports -- see lazy.ts: import() does not resolve under tsx's hook */
const worker = () => require('../worker/worker') as typeof import('../worker/worker');
// The config's schema loads zod: only commands that read conf.json pay for it (`dosvob status` does not).
const loadConfig = lazy(() => require('../common/config') as typeof import('../common/config'), 'loadConfig');
const errors = () => require('./errors') as typeof import('./errors');
const sessions = () => require('./session') as typeof import('./session');
const prunes = () => require('./commands/prune') as typeof import('./commands/prune');
const schedules = () => require('./commands/schedule') as typeof import('./commands/schedule');
const cancel = lazy(() => require('./commands/cancel') as typeof import('./commands/cancel'), 'cancel');
const cleanup = lazy(() => require('./commands/cleanup') as typeof import('./commands/cleanup'), 'cleanup');
const images = lazy(() => require('./commands/images') as typeof import('./commands/images'), 'images');
const prune = lazy(prunes, 'prune');
const versionsProtect = lazy(prunes, 'versionsProtect');
const restore = lazy(() => require('./commands/restore') as typeof import('./commands/restore'), 'restore');
const restoreToVolume = lazy(
  () => require('./commands/restore-volume') as typeof import('./commands/restore-volume'),
  'restoreToVolume',
);
const runs = lazy(() => require('./commands/runs') as typeof import('./commands/runs'), 'runs');
const scheduleAct = lazy(schedules, 'scheduleAct');
const scheduleCreate = lazy(schedules, 'scheduleCreate');
const scheduleShow = lazy(schedules, 'scheduleShow');
const setup = lazy(() => require('./commands/setup') as typeof import('./commands/setup'), 'setup');
const status = lazy(() => require('./commands/status') as typeof import('./commands/status'), 'status');
const sync = lazy(() => require('./commands/sync') as typeof import('./commands/sync'), 'sync');
const versions = lazy(() => require('./commands/versions') as typeof import('./commands/versions'), 'versions');
const verify = lazy(() => require('./commands/verify') as typeof import('./commands/verify'), 'verify');
const connectTemporal = lazy(() => require('./connect') as typeof import('./connect'), 'connectTemporal');
const runIdsFromEnv = lazy(() => require('./ids') as typeof import('./ids'), 'runIdsFromEnv');
const preflight = lazy(() => require('./preflight') as typeof import('./preflight'), 'preflight');
const openSession = lazy(sessions, 'openSession');
const createWorkers = lazy(worker, 'createWorkers');
const installLogger = lazy(worker, 'installLogger');
const runWorkers = lazy(worker, 'runWorkers');
const describeError = lazy(errors, 'describeError');
const exitCodeFor = lazy(errors, 'exitCodeFor');
/* eslint-enable @typescript-eslint/no-require-imports */

/** Where a CLI invocation reads and writes: the process's own, or a test's. */
export interface CliIo {
  env?: NodeJS.ProcessEnv;
  stdout?: Output['stream'];
  stderr?: Writable;
  /** Merged into the input of workflows this invocation starts (tests shorten the run's waits). */
  input?: BackupInput;
  /** How often `sync` polls a followed run. */
  refreshMs?: number;
  /** Without a terminal, how often `sync` prints a moving transfer's progress. */
  plainEveryMs?: number;
}

interface RestoreCliOptions {
  at?: string;
  version?: string;
  toVolume?: string;
  region?: string;
  attachTo?: string;
  keepPartial?: boolean;
  detach?: boolean;
  to?: string;
  force?: boolean;
  json?: boolean;
}

/** `N/T`: the N-th of T slices. */
function subsetArg(value: string): { n: number; of: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const n = Number(m?.[1]);
  const of = Number(m?.[2]);
  if (!m || n < 1 || of < 1 || n > of) throw new InvalidArgumentError('must be N/T with 1 <= N <= T, e.g. 3/7');
  return { n, of };
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number above 0');
  return n;
}

export function buildProgram(io: CliIo, setExitCode: (code: number) => void): Command {
  const env = io.env ?? process.env;
  const stderr = io.stderr ?? process.stderr;
  const program = new Command()
    .name('dosvob')
    .description('Durable, incremental backups of DigitalOcean volumes to raw disk images, on Temporal.')
    .option('-c, --config <path>', 'conf.json to use (default ./conf.json, or $DOSVOB_CONFIG)')
    .configureOutput({
      writeOut: (text) => (io.stdout ?? process.stdout).write(text),
      writeErr: (text) => stderr.write(text),
      // One line, like every other error.
      outputError: (text, write) => write(`dosvob: ${text.replace(/^error: /, '')}`),
    })
    .exitOverride();

  const config = (requireToken = true): Config =>
    loadConfig({ path: program.opts<{ config?: string }>().config, requireToken, env });
  const output = (json?: boolean) => createOutput({ json, stdout: io.stdout, stderr });
  const session = async (options: Omit<OpenSessionOptions, 'env'> = {}): Promise<OpenSession> => {
    const opened = await openSession({ ...options, env });
    opened.input = { ...io.input };
    if (io.refreshMs) opened.refreshMs = io.refreshMs;
    if (io.plainEveryMs) opened.plainEveryMs = io.plainEveryMs;
    return opened;
  };
  const withSession = async <T>(options: Omit<OpenSessionOptions, 'env'>, fn: (s: OpenSession) => Promise<T>) => {
    const opened = await session(options);
    try {
      return await fn(opened);
    } finally {
      await opened.close();
    }
  };

  program
    .command('sync')
    .description('Back up every configured volume now, or follow the run already in progress.')
    .option('--detach', 'start the run (or find the running one) and return at once')
    .option('--json', 'print the outcome as JSON instead of following the run on screen')
    .action(async (opts: { detach?: boolean; json?: boolean }) => {
      const conf = config();
      const out = output(opts.json);
      // A wrong token or region is one line at once, before a local Temporal server is started for nothing.
      const volumes = await preflight(conf);
      const outcome = await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
        sync(s, conf, out, { detach: opts.detach, volumes }),
      );
      setExitCode(outcome.exitCode);
    });

  program
    .command('status')
    .description("The running run's progress, or else the last run's result.")
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const out = output(opts.json);
      await withSession({ log: (l) => out.note(l) }, (s) => status(s, out));
    });

  program
    .command('runs')
    .description('Recent runs: start, outcome, duration, bytes transferred, estimated cost.')
    .option('-n, --limit <n>', 'how many', positiveInt, 10)
    .option('--json', 'print as JSON')
    .action(async (opts: { limit: number; json?: boolean }) => {
      const out = output(opts.json);
      await withSession({ log: (l) => out.note(l) }, (s) => runs(s, out, { limit: opts.limit }));
    });

  program
    .command('cancel')
    .description('Cancel the running run, wait for its cleanup, and list what it deleted.')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const conf = config();
      const out = output(opts.json);
      // The cleanup is workflow code: in the embedded mode nothing but this process can run it.
      await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) => cancel(s, out));
    });

  program
    .command('cleanup')
    .description('Delete what earlier runs left on DigitalOcean (refused while a run is in progress).')
    .option('--dry-run', 'only list the leftovers')
    .option('--json', 'print as JSON')
    .action(async (opts: { dryRun?: boolean; json?: boolean }) => {
      const conf = config();
      const out = output(opts.json);
      // A dry run only lists, from here; the cleanup itself is a workflow, which in the embedded mode needs workers here.
      await withSession({ workersFor: opts.dryRun ? undefined : conf, log: (l) => out.note(l) }, (s) =>
        cleanup(s, conf, out, { dryRun: opts.dryRun, env }),
      );
    });

  program
    .command('images')
    .description(
      'The local backups: size, last sync, state. Finishes an update a crash interrupted while it was being written.',
    )
    .option(
      '--verify',
      'read every image in full and check each block against its manifest; check every saved chunk against its ' +
        'name (a bad one is moved aside as .bad) and every kept version for the chunks it needs',
    )
    .option(
      '--subset <N/T>',
      'with --verify, check only the N-th of T slices of the chunks and of each image (one slice a night)',
      subsetArg,
    )
    .option('--json', 'print as JSON')
    .action(async (opts: { verify?: boolean; subset?: { n: number; of: number }; json?: boolean }) => {
      // No DigitalOcean call: works without a token (e.g. restoring after the account is gone).
      const conf = config(false);
      const out = output(opts.json);
      const outcome = await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
        images(s, out, { verify: opts.verify === true || opts.subset !== undefined, subset: opts.subset }),
      );
      setExitCode(outcome.exitCode);
    });

  // Subcommands (protect, unprotect) join this command below; without one it lists.
  program
    .command('versions')
    .description(
      'The kept versions of VOLUME (a name, or name@region), or of every volume: time, snapshot, run, blocks ' +
        'changed, bytes each one alone holds, and what the store costs against its images.',
    )
    .argument('[volume]', 'a volume name, or name@region')
    .option('--json', 'print as JSON')
    .action(async (volume: string | undefined, opts: { json?: boolean }) => {
      const conf = config(false);
      const out = output(opts.json);
      await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) => versions(s, out, { volume }));
    });

  program
    .command('restore')
    .description(
      'Bring back a kept version of VOLUME: as a new DigitalOcean volume (--to-volume NAME: created, written, read ' +
        "back and verified, left detached or attached to --attach-to), or as a sparse raw image FILE on the store worker's " +
        'machine (--to FILE). Every block is checked against the version.',
    )
    .argument('<volume>', 'a volume name, or name@region')
    .option('--at <time>', 'the newest version at or before TIME (ISO time, local unless it says; or a date)')
    .option('--version <id>', 'this version (see dosvob versions)')
    .option('--to-volume <name>', 'a new DigitalOcean volume to create and restore onto (never an existing one)')
    .option('--region <region>', "with --to-volume: the new volume's region (default: the backed-up volume's)")
    .option('--attach-to <droplet>', 'with --to-volume: attach the restored volume to this droplet (name or id)')
    .option('--keep-partial', 'with --to-volume: keep an unfinished target volume on failure, for inspection')
    .option('--detach', 'with --to-volume: start the restore run and return at once')
    .option('--to <file>', "the raw image to write, on the store worker's machine")
    .option('--force', 'with --to: replace FILE if it exists')
    .option('--json', 'print as JSON')
    .action(async (volume: string, opts: RestoreCliOptions) => {
      const { UserError } = errors();
      const out = output(opts.json);
      if ((opts.to === undefined) === (opts.toVolume === undefined)) {
        throw new UserError('give --to-volume NAME (a new DigitalOcean volume) or --to FILE, one of them');
      }
      const volumeOnly = ['region', 'attachTo', 'keepPartial', 'detach'] as const;
      const misplaced = volumeOnly.filter((k) => opts[k] !== undefined);
      if (opts.to !== undefined && misplaced.length > 0) {
        throw new UserError(
          `--${misplaced[0]?.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} goes with --to-volume, not --to`,
        );
      }
      if (opts.toVolume !== undefined) {
        const conf = config();
        const toVolume = opts.toVolume;
        const outcome = await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
          restoreToVolume(s, conf, out, { volume, ...opts, toVolume }),
        );
        if (outcome.result === undefined && !opts.detach) setExitCode(1);
        return;
      }
      const conf = config(false);
      const to = opts.to as string;
      await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
        restore(s, out, { volume, at: opts.at, version: opts.version, to, force: opts.force }),
      );
    });

  program
    .command('verify')
    .description(
      'Check a kept version of VOLUME (or of every volume): every block against its hash, or with --fsck its ' +
        "filesystem's own checker, read-only (a version that is not the newest is restored to a temporary file " +
        'first). A failed check marks the version suspect. Exit code 1 when one fails.',
    )
    .argument('[volume]', 'a volume name, or name@region')
    .option('--at <time>', 'the newest version at or before TIME (ISO time, local unless it says; or a date)')
    .option('--version <id>', 'this version (see dosvob versions)')
    .option('--fsck', 'run the filesystem checker (e2fsck -fn, xfs_repair -n) instead of the hash check')
    .option('--json', 'print as JSON')
    .action(
      async (volume: string | undefined, opts: { at?: string; version?: string; fsck?: boolean; json?: boolean }) => {
        const conf = config(false);
        const out = output(opts.json);
        const report = await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
          verify(s, out, { volume, ...opts }),
        );
        setExitCode(report.exitCode);
      },
    );

  const schedule = program
    .command('schedule')
    .description('The Temporal Schedule of backups (conf.json "schedule": an interval like 4h, or a cron expression).');
  schedule
    .command('create')
    .description('Create the schedule from conf.json, or bring an existing one in line with it.')
    .option('--json', 'print the schedule as JSON')
    .action(async (opts: { json?: boolean }) => {
      const conf = config(false);
      const out = output(opts.json);
      await withSession({ log: (l) => out.note(l) }, (s) => scheduleCreate(s, conf, out));
    });
  schedule
    .command('show')
    .description('The schedule: when, what it starts, next and recent runs.')
    .option('--json', 'print as JSON')
    .action(async (opts: { json?: boolean }) => {
      const out = output(opts.json);
      await withSession({ log: (l) => out.note(l) }, (s) => scheduleShow(s, out));
    });
  const actions: Record<ScheduleAction, string> = {
    pause: 'Pause the schedule (runs in progress continue).',
    resume: 'Resume a paused schedule.',
    trigger: 'Start a scheduled run now (skipped if a run is in progress).',
    delete: 'Delete the schedule (runs in progress continue).',
  };
  for (const [name, description] of Object.entries(actions) as [ScheduleAction, string][]) {
    schedule
      .command(name)
      .description(description)
      .action(async () => {
        const out = output(false);
        await withSession({ log: (l) => out.note(l) }, (s) => scheduleAct(s, out, name));
      });
  }

  program
    .command('setup')
    .description("Register dosvob's search attributes on the Temporal namespace (once per cluster).")
    .option('--wait <seconds>', 'retry this long while Temporal is starting', positiveInt)
    .option('--json', 'print as JSON')
    .action(async (opts: { wait?: number; json?: boolean }) => {
      const out = output(opts.json);
      await setup((connectTimeoutMs) => session({ connectTimeoutMs }), out, { waitMs: (opts.wait ?? 0) * 1000 });
    });

  program
    .command('worker')
    .description('Run dosvob workers against TEMPORAL_ADDRESS (or the local server) until interrupted.')
    .option(
      '--role <role>',
      'all | main (workflow + DigitalOcean) | store (the transfer; needs the backups dir)',
      'all',
    )
    .action(async (opts: { role: WorkerRole }) => {
      if (!['all', 'main', 'store'].includes(opts.role)) throw new ConfigError(`--role must be all, main or store`);
      const conf = config(opts.role !== 'store');
      const ids = runIdsFromEnv(env);
      installLogger(env.DOSVOB_LOG_LEVEL ?? 'INFO');
      const temporal = await connectTemporal({ log: console.log, env });
      const abort = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => abort.abort());
      const workers = await createWorkers({
        connection: await temporal.nativeConnection(),
        namespace: temporal.namespace,
        config: conf,
        role: opts.role,
        taskQueue: ids.taskQueue,
        options: sessions().CLI_WORKER_OPTIONS,
      });
      console.log(`dosvob worker (${opts.role}) polling ${workers.map((w) => w.options.taskQueue).join(', ')}`);
      await runWorkers(workers, abort.signal);
      await temporal.close();
    });

  program
    .command('prune')
    .description(
      'Remove the versions the retention policy (conf.json "keep") does not keep, then unneeded chunks; lists why each kept version stays.',
    )
    .option('--dry-run', 'list what would be kept and removed; change nothing')
    .option('--json', 'print as JSON')
    .action(async (opts: { dryRun?: boolean; json?: boolean }) => {
      const conf = config(false);
      const out = output(opts.json);
      const outcome = await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
        prune(s, out, { dryRun: opts.dryRun === true }),
      );
      setExitCode(outcome.exitCode);
    });

  // `versions` itself (the listing) may be registered above by its own code: protect/unprotect join it.
  const versionsCmd = program.commands.find((c) => c.name() === 'versions') ?? program.command('versions');
  for (const [name, protect] of [
    ['protect', true],
    ['unprotect', false],
  ] as const) {
    versionsCmd
      .command(name)
      .description(
        protect ? 'Keep VERSION of VOLUME whatever the retention policy says.' : 'Let retention prune VERSION again.',
      )
      .argument('<volume>', 'volume name (or store key such as data@fra1)')
      .argument('<version>', 'version id (or a prefix naming exactly one)')
      .option('--json', 'print as JSON')
      .action(async (volume: string, version: string, _opts: unknown, cmd: Command) => {
        const conf = config(false);
        // `versions --json` is the listing's option too: commander gives it to whichever command it reaches first.
        const out = output(cmd.optsWithGlobals<{ json?: boolean }>().json);
        await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
          versionsProtect(s, out, { volume, version, protect }),
        );
      });
  }

  return program;
}

/** Run one CLI invocation; resolves to its exit code. */
export async function run(argv: string[], io: CliIo = {}): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(io, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    // Commander has already printed its one line (or the help, exit code 0).
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    (io.stderr ?? process.stderr).write(`dosvob: ${describeError(err).split('\n').join('\n  ')}\n`);
    return exitCodeFor(err);
  }
}

export async function main(argv = process.argv): Promise<number> {
  return run(argv.slice(2));
}

if (require.main === module) {
  void main().then((code) => {
    process.exitCode = code;
  });
}
