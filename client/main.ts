#!/usr/bin/env node
// The `dosvob` command line. Every command prints one clear line on error and exits 0 (done), 1 (a volume failed,
// or something outside failed) or 2 (bad input or configuration). Read commands take --json.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import type { Writable } from 'node:stream';
import { ConfigError, loadConfig, type Config } from '../common/config';
import type { BackupInput } from '../workflows/types';
import { createWorkers, installLogger, runWorkers, type WorkerRole } from '../worker/worker';
import { cancel } from './commands/cancel';
import { cleanup } from './commands/cleanup';
import { images } from './commands/images';
import { runs } from './commands/runs';
import { scheduleAct, scheduleCreate, scheduleShow, type ScheduleAction } from './commands/schedule';
import { setup } from './commands/setup';
import { status } from './commands/status';
import { sync } from './commands/sync';
import { connectTemporal } from './connect';
import { describeError, exitCodeFor } from './errors';
import { runIdsFromEnv } from './ids';
import { createOutput, type Output } from './output';
import { preflight } from './preflight';
import { CLI_WORKER_OPTIONS, openSession, type OpenSession, type OpenSessionOptions } from './session';

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
      await withSession({ log: (l) => out.note(l) }, (s) => cleanup(s, conf, out, { dryRun: opts.dryRun }));
    });

  program
    .command('images')
    .description(
      'The local backups: size, last sync, state. Finishes an update a crash interrupted while it was being written.',
    )
    .option('--verify', 'read every image in full and check each block against its manifest')
    .option('--json', 'print as JSON')
    .action(async (opts: { verify?: boolean; json?: boolean }) => {
      // No DigitalOcean call: works without a token (e.g. restoring after the account is gone).
      const conf = config(false);
      const out = output(opts.json);
      const outcome = await withSession({ workersFor: conf, log: (l) => out.note(l) }, (s) =>
        images(s, out, { verify: opts.verify === true }),
      );
      setExitCode(outcome.exitCode);
    });

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
      await setup(() => session(), out, { waitMs: (opts.wait ?? 0) * 1000 });
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
        options: CLI_WORKER_OPTIONS,
      });
      console.log(`dosvob worker (${opts.role}) polling ${workers.map((w) => w.options.taskQueue).join(', ')}`);
      await runWorkers(workers, abort.signal);
      await temporal.close();
    });

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
