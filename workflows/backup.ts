// The backup run, as in the runbook: sweep leftovers, make the run's keys, a droplet per region (a few, at a higher
// concurrency), then per volume snapshot → copy → attach → transfer → detach → delete copy → delete snapshot,
// and finally delete the droplets and the key. Every resource is recorded in the ledger before it
// is created, and the ledger is torn down on success, failure and cancellation alike.
import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ChildWorkflowCancellationType,
  getExternalWorkflowHandle,
  ParentClosePolicy,
  isCancellation,
  log,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { SourceVolume } from '../activities/digitalocean/activities';
import type { HealthcheckActivities } from '../activities/healthchecks';
import type { RunSettings } from '../activities/settings';
import type { PruneOutcome } from '../activities/retention/types';
import { legacyRunKey, runKey, runTag } from '../common/names';
import { estimateCostUsd, type ResourceSeconds } from '../common/pricing';
import { DOSVOB_OUTCOME, DOSVOB_VOLUMES, type Outcome } from '../common/search-attributes';
import { BACKUP_WORKFLOW_ID } from '../common/task-queues';
import { apiActivities, EphemeralResources, type ReadyDroplet } from './ephemeral';
import { progressQuery } from './queries';
import { DropletPool } from './droplet-pool';
import { Slots } from './slots';
import { cappedKeywordList, formatBytes, limitConcurrency, reason } from './util';
import { backupOneVolume, storeActivities, type VolumeBackupContext } from './volume-backup';
import { backupVolumeWorkflow, dropletReadySignal } from './volume-child';
import { pruneOutcome, retentionActivities } from './prune';
import { checksText, madeSuspectVersion } from './fsck-step';
import {
  DEFAULT_TIMINGS,
  type BackupInput,
  type BackupResult,
  type RunProgress,
  type Timings,
  type VolumeOutcome,
  type VolumeProgress,
} from './types';

export { progressQuery };

/**
 * Patches (`patched()`): runs that started on an older worker replay with the older shape.
 * SETTLE_CREATES: creates are waited for when cancelled, and teardown waits for those in flight.
 * RELEASE_FAILED_VOLUME (volume-backup.ts): a failed volume's copy and snapshot are deleted at once.
 */
const SETTLE_CREATES = 'settle-creates-before-teardown';
/** INSTALLATION_NAMES: names carry the installation's id and a run key from the run id's random bits. */
const INSTALLATION_NAMES = 'installation-names';
/** PRUNE_AFTER_RUN: a successful run prunes versions by the retention policy and collects garbage (store queue). */
const PRUNE_AFTER_RUN = 'prune-after-run';
/** LARGEST_FIRST: volumes are backed up largest first (stable: same-sized ones in list order). */
const LARGEST_FIRST = 'largest-first';
/** VOLUME_CHILDREN: a run of more than `volumesPerHistory` volumes backs each one up in a child workflow. */
const VOLUME_CHILDREN = 'volume-children';
/**
 * PIPELINED_VOLUMES: `concurrency` volumes are attached and transferring at once, and as many more are snapshotted
 * and copied meanwhile, so a slot that frees finds its next volume ready to attach; a droplet's attaches and
 * detaches go one at a time, as DigitalOcean runs them (inline runs only: children keep their own shape).
 */
const PIPELINED_VOLUMES = 'pipelined-volumes';
/** Inline, a volume adds about 40 events to the run's history: 40 volumes stay near 1,700, well inside the limits. */
export const DEFAULT_VOLUMES_PER_HISTORY = 40;

/** `; pruned 3 old versions, freed 12 MiB` for the run's message. */
function pruneText(p: PruneOutcome | undefined): string {
  if (!p) return '';
  if (!p.ok) return `; pruning failed: ${p.error ?? 'unknown error'}`;
  if (p.versionsRemoved === 0 && p.bytesFreed === 0) return '';
  return `; pruned ${p.versionsRemoved} old version(s), freed ${formatBytes(p.bytesFreed)}`;
}

/**
 * One backup run at a time, whoever starts it: the run itself always has the workflow id
 * `singletonId` ("dosvob-backup"), which Temporal never lets two running workflows share.
 * Started under any other id (a Temporal Schedule appends the time to its ids), this workflow
 * launches the run as a child with that id, or reports "skipped" when one is already running.
 */
export async function backupWorkflow(input: BackupInput = {}): Promise<BackupResult> {
  const singletonId = input.singletonId ?? BACKUP_WORKFLOW_ID;
  if (workflowInfo().workflowId === singletonId) return runBackup(input);
  try {
    const child = await startChild(backupWorkflow, {
      workflowId: singletonId,
      args: [input],
      // Cancelling the launcher cancels the run, whose cleanup then still runs.
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
    });
    return await child.result();
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const message = `skipped: backup run ${singletonId} is already in progress`;
    log.info(message);
    upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: 'skipped' satisfies Outcome }]);
    setCurrentDetails(message);
    return {
      run: '',
      skipped: true,
      volumes: [],
      swept: [],
      deleted: [],
      durationMs: 0,
      resourceSeconds: { dropletSeconds: 0, volumeGibSeconds: 0, snapshotGibSeconds: 0 },
      estimatedCostUsd: 0,
      message,
    };
  }
}

/** The run, bracketed by healthchecks.io pings and the outcome search attribute. */
async function runBackup(input: BackupInput): Promise<BackupResult> {
  const health = proxyActivities<HealthcheckActivities>({
    startToCloseTimeout: '30s',
    retry: { maximumAttempts: 2 },
  });
  upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: 'running' satisfies Outcome }]);
  await health.pingHealthcheck.executeWithOptions({ summary: 'healthchecks: start' }, [{ signal: 'start' }]);
  try {
    const result = await backupVolumes(input);
    upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: 'ok' satisfies Outcome }]);
    // A suspect version (its filesystem check failed) is news the day it is made: /fail, though the run succeeded.
    const suspect = madeSuspectVersion(result);
    await health.pingHealthcheck.executeWithOptions({ summary: `healthchecks: ${suspect ? 'fail' : 'success'}` }, [
      { signal: suspect ? 'fail' : 'success', message: result.message },
    ]);
    return result;
  } catch (err) {
    const outcome: Outcome = isCancellation(err) ? 'cancelled' : 'failed';
    upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: outcome }]);
    await CancellationScope.nonCancellable(() =>
      health.pingHealthcheck.executeWithOptions({ summary: 'healthchecks: fail' }, [
        { signal: 'fail', message: reason(err) },
      ]),
    );
    throw err;
  }
}

async function backupVolumes(input: BackupInput): Promise<BackupResult> {
  const t: Timings = { ...DEFAULT_TIMINGS, ...input.timings };
  const { runId, startTime } = workflowInfo();
  const progress: RunProgress = { phase: 'planning', volumes: [], swept: [], deleted: [] };
  setHandler(progressQuery, () => progress);

  const setPhase = (phase: RunProgress['phase']) => {
    progress.phase = phase;
    showDetails();
  };
  const showDetails = () => {
    const active = progress.volumes.filter((v) => v.step !== 'waiting' && v.step !== 'done' && v.step !== 'failed');
    const done = progress.volumes.filter((v) => v.step === 'done').length;
    const lines = [`**${progress.phase}** — ${done} of ${progress.volumes.length} volumes backed up`];
    for (const v of active) lines.push(`- ${v.name} (${v.region}, ${formatBytes(v.sizeBytes)}): ${v.step}`);
    for (const v of progress.volumes)
      if (v.step === 'done' && v.version)
        lines.push(
          `- ${v.name} (${v.region}): version ${v.version}${v.frozen ? ' (frozen)' : ''}${v.check ? `, ${v.check}` : ''}`,
        );
    setCurrentDetails(lines.join('\n'));
  };

  // Settings come from the worker's conf.json, so a schedule needs no input.
  const proxies = apiActivities(t);
  const { api, cleanup, creates } = proxies;
  const settleCreates = patched(SETTLE_CREATES);
  const create = settleCreates ? creates : api;
  const settings: RunSettings = await api.resolveRunSettings({
    regions: input.regions,
    include: input.include,
    exclude: input.exclude,
  });
  // The installation's id and the run id's random bits name what this run creates. A run started on an older worker
  // keeps the names it began with (its run key was the run id's time digits) when it replays here.
  const run =
    patched(INSTALLATION_NAMES) && settings.installationId
      ? runTag(settings.installationId, runKey(runId))
      : legacyRunKey(runId);
  const store = storeActivities(t, settings.storeTaskQueue);
  await api.checkAccess.executeWithOptions({ summary: 'check the DigitalOcean token' }, []);
  const volumes: SourceVolume[] = await api.listSourceVolumes.executeWithOptions(
    { summary: `list volumes in ${settings.regions.join(', ')}` },
    [{ regions: settings.regions, include: settings.include, exclude: settings.exclude }],
  );
  upsertSearchAttributes([{ key: DOSVOB_VOLUMES, value: cappedKeywordList(volumes.map((v) => v.name)) }]);
  progress.volumes = volumes.map((v) => ({
    name: v.name,
    region: v.region,
    step: 'waiting',
    sizeBytes: v.sizeGigabytes * 2 ** 30,
  }));

  const { swept, deleted } = progress;
  const ephemeral = new EphemeralResources({
    proxies,
    timings: t,
    run,
    runId,
    dropletSize: settings.dropletSize,
    dropletImage: settings.dropletImage,
    settleCreates,
    deleted,
  });
  const { ledger } = ephemeral;
  const outcomes: VolumeOutcome[] = [];
  /** The resource-seconds of volumes backed up in child workflows (their ledgers are their own). */
  const childUsage: ResourceSeconds[] = [];
  /** Every child's end: teardown waits for all of them (each deletes what it made first). */
  const children: Promise<unknown>[] = [];
  let failure: unknown;
  /** What pruning after the run removed (finish() reads it). */
  let pruning: PruneOutcome | undefined;

  try {
    setPhase('sweeping');
    await ephemeral.sweepLeftovers(swept);

    if (volumes.length === 0) {
      setPhase('finished');
      return finish(`no volumes to back up in ${settings.regions.join(', ')}`);
    }

    setPhase('preparing');
    const key = await ephemeral.registerKey();
    // Every region's droplet starts booting now. One that never comes up fails its region's volumes, not the run.
    const regions = [...new Set(volumes.map((v) => v.region))];
    const droplets = new Map<string, Promise<ReadyDroplet>>();
    for (const region of regions) droplets.set(region, ephemeral.droplet(region, key.keyId));
    /** PIPELINED_VOLUMES: each region's droplets, when it has more than one. */
    const pools = new Map<string, DropletPool>();
    const volumeContext: VolumeBackupContext = {
      timings: t,
      run,
      runId,
      settings,
      ledger,
      api,
      create,
      cleanup,
      store,
      droplet: (volume) => pools.get(volume.region)?.take() ?? (droplets.get(volume.region) as Promise<ReadyDroplet>),
      dropletDone: (volume, dropletId) => pools.get(volume.region)?.give(dropletId),
      sshTarget: (droplet) => ephemeral.sshTarget(droplet),
      deleted,
      onChange: showDetails,
    };

    setPhase('backing up');
    // Largest first: the longest transfers start at once and the small volumes' setup and transfers fill in beside
    // them, instead of one large volume at the end running alone.
    const order = volumes.map((_, i) => i);
    if (patched(LARGEST_FIRST))
      order.sort((a, b) => (volumes[b]?.sizeGigabytes ?? 0) - (volumes[a]?.sizeGigabytes ?? 0));
    const inChildren =
      volumes.length > (input.volumesPerHistory ?? DEFAULT_VOLUMES_PER_HISTORY) && patched(VOLUME_CHILDREN);
    let inFlight = settings.concurrency;
    if (!inChildren && patched(PIPELINED_VOLUMES)) {
      const actionQueues = new Map<string, Slots>();
      volumeContext.attachSlots = new Slots(settings.concurrency);
      volumeContext.dropletActions = (dropletId) => {
        let queue = actionQueues.get(dropletId);
        if (!queue) actionQueues.set(dropletId, (queue = new Slots(1)));
        return queue;
      };
      inFlight = 2 * settings.concurrency;
      for (const [region, pool] of await dropletPools(
        order.map((i) => volumes[i] as SourceVolume),
        key.keyId,
        droplets,
      ))
        pools.set(region, pool);
    }
    await limitConcurrency(inFlight, order, async (index) => {
      const volume = volumes[index] as SourceVolume;
      const p = progress.volumes[index] as VolumeProgress;
      const outcome = inChildren
        ? await backupInChild(volume, p, index, droplets.get(volume.region) as Promise<ReadyDroplet>)
        : await backupOneVolume(volumeContext, volume, p);
      outcomes.push(outcome);
    });
  } catch (err) {
    failure = err;
  } finally {
    setPhase('cleaning up');
    // Non-cancellable: a cancelled run still deletes everything it created.
    await CancellationScope.nonCancellable(async () => {
      await Promise.allSettled(children);
      await ephemeral.teardown();
    });
    setPhase('finished');
  }
  if (failure !== undefined) throw failure;

  const failed = outcomes.filter((o) => !o.ok);
  // Only after a fully successful run: a failed volume's newest version is older than it should be, and pruning can
  // wait for a run that has the whole picture. A pruning failure is reported, never fails the backup.
  if (failed.length === 0 && patched(PRUNE_AFTER_RUN)) pruning = await pruneAfterRun();
  const result = finish(
    failed.length === 0
      ? `${outcomes.length} of ${volumes.length} volumes backed up${pruneText(pruning)}`
      : `${failed.length} of ${volumes.length} volumes failed: ${failed.map((f) => `${f.name}: ${f.error}`).join('; ')}`,
  );
  result.message += checksText(outcomes);
  if (failed.length > 0) throw ApplicationFailure.nonRetryable(result.message, 'BackupFailed', result);
  return result;

  // ---- steps ----

  function finish(message: string): BackupResult {
    const usage = ledger.resourceSeconds(Date.now());
    for (const c of childUsage) {
      usage.dropletSeconds += c.dropletSeconds;
      usage.volumeGibSeconds += c.volumeGibSeconds;
      usage.snapshotGibSeconds += c.snapshotGibSeconds;
    }
    return {
      run,
      volumes: [...outcomes].sort((a, b) => a.region.localeCompare(b.region) || a.name.localeCompare(b.name)),
      swept,
      deleted,
      durationMs: Date.now() - startTime.getTime(),
      resourceSeconds: usage,
      estimatedCostUsd: Math.round(estimateCostUsd(usage, settings.prices) * 1e6) / 1e6,
      message,
      ...(pruning ? { pruning } : {}),
    };
  }

  /**
   * One volume in a child workflow (VOLUME_CHILDREN): what the inline path does, in a history of its own. Cancelling
   * the run cancels the child, which tears down what it made before the run's teardown deletes the droplets.
   */
  async function backupInChild(
    volume: SourceVolume,
    p: VolumeProgress,
    index: number,
    droplet: Promise<ReadyDroplet>,
  ): Promise<VolumeOutcome> {
    // A start is never abandoned half-way: a child started just as the run is cancelled would outlive the run. So
    // the start is not cancellable, the run's cancellation reaches the child explicitly, and teardown waits for it.
    const scope = CancellationScope.current();
    if (scope.consideredCancelled) throw new CancelledFailure('the run was cancelled');
    p.step = 'in child workflow';
    showDetails();
    const child = await CancellationScope.nonCancellable(() =>
      startChild(backupVolumeWorkflow, {
        workflowId: `${workflowInfo().workflowId}-${runKey(runId)}-volume-${index}`,
        args: [
          {
            volume,
            progress: { ...p, step: 'waiting' },
            run,
            runId,
            settings,
            timings: t,
            clientKeyFingerprint: ephemeral.clientKeyFingerprint,
          },
        ],
        staticSummary: `back up ${volume.name} (${volume.region}), part of run ${run}`,
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      }),
    );
    const ended = child.result();
    children.push(ended);
    scope.cancelRequested.catch(() =>
      CancellationScope.nonCancellable(() =>
        getExternalWorkflowHandle(child.workflowId, child.firstExecutionRunId).cancel(),
      ).catch(() => undefined),
    );
    // A signal a child that already ended cannot take fails: nothing waits for it any more.
    void droplet.then(
      (d) => child.signal(dropletReadySignal, d).catch(() => undefined),
      (err: unknown) => child.signal(dropletReadySignal, { error: reason(err) }).catch(() => undefined),
    );
    try {
      const r = await ended;
      deleted.push(...r.deleted);
      childUsage.push(r.resourceSeconds);
      p.step = r.outcome.ok ? 'done' : 'failed';
      if (r.outcome.version) p.version = r.outcome.version;
      showDetails();
      return r.outcome;
    } catch (err) {
      if (isCancellation(err)) throw err;
      p.step = 'failed';
      showDetails();
      return {
        name: volume.name,
        region: volume.region,
        ok: false,
        error: reason(err),
        bytesRead: 0,
        bytesTransferred: 0,
        blocksChanged: 0,
        durationMs: 0,
      };
    }
  }

  /**
   * PIPELINED_VOLUMES: a droplet takes one action at a time, so a region's attaches and detaches queue on its one
   * droplet while the transfers are short. A region gets up to half the run's concurrency in droplets (never more
   * than it has volumes, nor more than the account's droplet limit leaves room for), and each volume takes the
   * least busy one that is up (droplet-pool.ts).
   */
  async function dropletPools(
    ordered: readonly SourceVolume[],
    sshKeyId: string,
    firsts: ReadonlyMap<string, Promise<ReadyDroplet>>,
  ): Promise<Map<string, DropletPool>> {
    const perRegion = new Map<string, number>();
    for (const v of ordered) perRegion.set(v.region, (perRegion.get(v.region) ?? 0) + 1);
    const wanted = new Map([...perRegion].map(([r, n]) => [r, Math.min(Math.ceil(settings.concurrency / 2), n)]));
    let further = [...wanted.values()].reduce((a, n) => a + n - 1, 0);
    const pools = new Map<string, DropletPool>();
    if (further === 0) return pools;
    let room = 0;
    try {
      room =
        (await api.dropletHeadroom.executeWithOptions({ summary: "count the account's droplets" }, [{ run }])) -
        perRegion.size;
    } catch (err) {
      if (isCancellation(err)) throw err;
      log.warn('could not count the droplets; one droplet per region', { error: reason(err) });
    }
    // Over the limit: take further droplets back from the region that has the most, until they fit.
    while (further > Math.max(0, room)) {
      const [region, n] = [...wanted].reduce((a, b) => (b[1] > a[1] ? b : a));
      wanted.set(region, n - 1);
      further--;
    }
    for (const [region, n] of wanted) {
      if (n <= 1) continue;
      const mine = [firsts.get(region) as Promise<ReadyDroplet>];
      for (let i = 1; i < n; i++) mine.push(ephemeral.droplet(region, sshKeyId, i));
      pools.set(region, new DropletPool(mine));
    }
    return pools;
  }

  async function pruneAfterRun(): Promise<PruneOutcome> {
    try {
      const report = await retentionActivities(settings.storeTaskQueue).pruneVersions.executeWithOptions(
        { summary: 'prune versions by the retention policy, collect garbage' },
        [{ detail: 'summary' }],
      );
      return pruneOutcome(report);
    } catch (err) {
      return {
        ok: false,
        versionsRemoved: 0,
        removed: [],
        chunksRemoved: 0,
        bytesFreed: 0,
        skipped: [],
        error: reason(err),
      };
    }
  }
}
