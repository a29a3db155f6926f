#!/usr/bin/env node
// The `dosvob` command line.
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig } from '../common/config';
import { WorkflowFailedError } from '@temporalio/client';
import { describeError, exitCodeFor, rootApplicationFailure } from './errors';
import { createWorkers, installLogger, runWorkers, type WorkerRole } from '../worker/worker';
import type { BackupResult } from '../workflows/types';
import { connectTemporal } from './connect';
import { formatResult, sync } from './sync';

const program = new Command()
  .name('dosvob')
  .description('Durable, incremental backups of DigitalOcean volumes to raw disk images, on Temporal.')
  .option('-c, --config <path>', 'conf.json to use (default ./conf.json, or $DOSVOB_CONFIG)')
  .showHelpAfterError()
  .exitOverride();

function globalConfig(requireToken = true) {
  const { config } = program.opts<{ config?: string }>();
  return loadConfig({ path: config, requireToken });
}

program
  .command('sync')
  .description('Back up every configured volume now (or follow the run already in progress).')
  .option('--detach', 'start the run and return at once')
  .action(async (opts: { detach?: boolean }) => {
    const config = globalConfig();
    try {
      await sync(config, { detach: opts.detach });
    } catch (err) {
      if (err instanceof WorkflowFailedError) {
        const details = rootApplicationFailure(err)?.details?.[0] as BackupResult | undefined;
        if (details?.volumes) for (const line of formatResult(details)) console.error(line);
      }
      throw err;
    }
  });

program
  .command('worker')
  .description('Run dosvob workers against TEMPORAL_ADDRESS (or the local server) until interrupted.')
  .option('--role <role>', 'all | main (workflow + DigitalOcean) | store (the transfer; needs the backups dir)', 'all')
  .action(async (opts: { role: WorkerRole }) => {
    if (!['all', 'main', 'store'].includes(opts.role)) throw new ConfigError(`--role must be all, main or store`);
    const config = globalConfig(opts.role !== 'store');
    installLogger(process.env.DOSVOB_LOG_LEVEL ?? 'INFO');
    const temporal = await connectTemporal({ log: console.log });
    const abort = new AbortController();
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => abort.abort());
    const workers = await createWorkers({
      connection: await temporal.nativeConnection(),
      namespace: temporal.namespace,
      config,
      role: opts.role,
    });
    console.log(`dosvob worker (${opts.role}) polling ${workers.map((w) => w.options.taskQueue).join(', ')}`);
    await runWorkers(workers, abort.signal);
    await temporal.close();
  });

export async function main(argv = process.argv): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // Commander has already printed its usage message.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    console.error(`dosvob: ${describeError(err)}`);
    return exitCodeFor(err);
  }
}

if (require.main === module) {
  void main().then((code) => {
    process.exitCode = code;
  });
}
