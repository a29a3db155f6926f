// A large run's volumes, each backed up in a child workflow of its own (workflows/backup.ts decides): a run's history
// grows by about 40 events a volume inline, which passes Temporal's 10,240-event warning near 250 volumes, while a
// child adds only a few events to its parent. The child does exactly what the inline path does (volume-backup.ts)
// with a ledger of its own, tears down what it made on failure and cancellation, and reports its outcome, what it
// deleted and its resource-seconds. The parent keeps the key and the droplets; a droplet still booting when the
// child starts reaches it by signal.
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  defineSignal,
  setCurrentDetails,
  setHandler,
} from '@temporalio/workflow';
import type { SourceVolume } from '../activities/digitalocean/activities';
import type { RunSettings } from '../activities/settings';
import type { ResourceSeconds } from '../common/pricing';
import { progressQuery } from './queries';
import { apiActivities, EphemeralResources, type ReadyDroplet } from './ephemeral';
import { DEFAULT_TIMINGS, type RunProgress, type Timings, type VolumeOutcome, type VolumeProgress } from './types';
import { backupOneVolume, storeActivities } from './volume-backup';

export interface VolumeChildInput {
  volume: SourceVolume;
  progress: VolumeProgress;
  /** The parent run's tag in names and its run id (the run's SSH keys are derived from it). */
  run: string;
  runId: string;
  settings: RunSettings;
  timings: Partial<Timings>;
  clientKeyFingerprint: string | undefined;
  /** The region's droplet when it was ready at the start; otherwise it comes by `dropletReadySignal`. */
  droplet?: ReadyDroplet;
}

export interface VolumeChildResult {
  outcome: VolumeOutcome;
  deleted: string[];
  resourceSeconds: ResourceSeconds;
}

/** The region's droplet is up (or never will be: `error`). */
export const dropletReadySignal = defineSignal<[ReadyDroplet | { error: string }]>('dropletReady');

export async function backupVolumeWorkflow(input: VolumeChildInput): Promise<VolumeChildResult> {
  const t: Timings = { ...DEFAULT_TIMINGS, ...input.timings };
  const p: VolumeProgress = { ...input.progress };
  const deleted: string[] = [];
  // The same query as the run's, for its one volume: `dosvob status` and `sync` show a child's step and transfer.
  setHandler(progressQuery, (): RunProgress => ({ phase: 'backing up', volumes: [p], swept: [], deleted }));
  let droplet: ReadyDroplet | { error: string } | undefined = input.droplet;
  setHandler(dropletReadySignal, (d) => {
    droplet ??= d;
  });

  const proxies = apiActivities(t);
  // Only its ledger and teardown: the key and the droplet are the parent's.
  const own = new EphemeralResources({
    proxies,
    timings: t,
    run: input.run,
    runId: input.runId,
    dropletSize: input.settings.dropletSize,
    dropletImage: input.settings.dropletImage,
    settleCreates: true,
    deleted,
  });
  own.clientKeyFingerprint = input.clientKeyFingerprint;
  try {
    const outcome = await backupOneVolume(
      {
        timings: t,
        run: input.run,
        runId: input.runId,
        settings: input.settings,
        ledger: own.ledger,
        api: proxies.api,
        create: proxies.creates,
        cleanup: proxies.cleanup,
        store: storeActivities(t, input.settings.storeTaskQueue),
        droplet: async () => {
          await condition(() => droplet !== undefined);
          const d = droplet as ReadyDroplet | { error: string };
          if ('error' in d) throw ApplicationFailure.nonRetryable(d.error, 'DropletFailed');
          return d;
        },
        sshTarget: (d) => own.sshTarget(d),
        deleted,
        onChange: () =>
          setCurrentDetails(`**${p.name}** (${p.region}): ${p.step}${p.version ? `, version ${p.version}` : ''}`),
      },
      input.volume,
      p,
    );
    return { outcome, deleted, resourceSeconds: own.ledger.resourceSeconds(Date.now()) };
  } finally {
    // Non-cancellable: a cancelled child still deletes its snapshot and copy (the parent cannot see them).
    await CancellationScope.nonCancellable(() => own.teardown());
  }
}
