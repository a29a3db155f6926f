// The backup run, as in the runbook: sweep leftovers, make the run's keys, one droplet per region,
// then per volume snapshot → copy → attach → transfer → detach → delete copy → delete snapshot,
// and finally delete the droplets and the key. Every resource is recorded in the ledger before it
// is created, and the ledger is torn down on success, failure and cancellation alike.
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  defineQuery,
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
import type {
  DigitalOceanActivities,
  DropletReady,
  ResourceRef,
  SourceVolume,
} from '../activities/digitalocean/activities';
import type { HealthcheckActivities } from '../activities/healthchecks';
import type { RunSettings, SettingsActivities } from '../activities/settings';
import type { TransferActivities } from '../activities/transfer/activity';
import type { PruneOutcome } from '../activities/retention/types';
import { devicePath, legacyRunKey, names, runKey, runTag } from '../common/names';
import { estimateCostUsd } from '../common/pricing';
import { DOSVOB_OUTCOME, DOSVOB_VOLUMES, type Outcome } from '../common/search-attributes';
import { BACKUP_WORKFLOW_ID } from '../common/task-queues';
import { ms, retryPolicy } from './activity-options';
import { Ledger, type Attachment, type LedgerKey } from './ledger';
import { deleteInOrder as deleteResourcesInOrder, describeRef } from './deletion';
import { cappedKeywordList, formatBytes, limitConcurrency } from './util';
import { transferBudgetMs } from './transfer-budget';
import { pruneOutcome, retentionActivities } from './prune';
import {
  DEFAULT_TIMINGS,
  type BackupInput,
  type BackupResult,
  type RunProgress,
  type Timings,
  type VolumeOutcome,
  type VolumeProgress,
  type VolumeStep,
} from './types';

export const progressQuery = defineQuery<RunProgress>('progress');

/** DigitalOcean (and settings) activities: any worker on the main queue. */
function apiActivities(t: Timings) {
  const api = proxyActivities<DigitalOceanActivities & SettingsActivities>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    heartbeatTimeout: ms(Math.max(t.apiHeartbeatTimeoutMs, t.pollIntervalMs * 3)),
    retry: retryPolicy(t, t.apiMaximumAttempts),
  });
  const droplet = proxyActivities<DigitalOceanActivities>({
    startToCloseTimeout: ms(t.dropletReadyTimeoutMs),
    heartbeatTimeout: ms(Math.max(t.apiHeartbeatTimeoutMs, t.pollIntervalMs * 3)),
    retry: retryPolicy(t, t.apiMaximumAttempts),
  });
  const cleanup = proxyActivities<DigitalOceanActivities>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    retry: retryPolicy(t, t.cleanupMaximumAttempts),
  });
  // A cancelled create is waited for (the SDK's default, TRY_CANCEL, would not): what it made must be
  // known, or at least have appeared under its name, before teardown looks for it. The creates do not
  // act on the cancellation their heartbeats bring: they finish, and the workflow gets their result.
  const creates = proxyActivities<DigitalOceanActivities>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    heartbeatTimeout: ms(Math.max(t.apiHeartbeatTimeoutMs, t.pollIntervalMs * 3)),
    retry: retryPolicy(t, t.apiMaximumAttempts),
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
  return { api, droplet, cleanup, creates };
}

/**
 * Patches (`patched()`): runs that started on an older worker replay with the older shape.
 * SETTLE_CREATES: creates are waited for when cancelled, and teardown waits for those in flight.
 * RELEASE_FAILED_VOLUME: a failed volume's copy and snapshot are deleted at once, not at the end of the run.
 */
const SETTLE_CREATES = 'settle-creates-before-teardown';
const RELEASE_FAILED_VOLUME = 'release-failed-volume';
/** INSTALLATION_NAMES: names carry the installation's id and a run key from the run id's random bits. */
const INSTALLATION_NAMES = 'installation-names';
/** PRUNE_AFTER_RUN: a successful run prunes versions by the retention policy and collects garbage (store queue). */
const PRUNE_AFTER_RUN = 'prune-after-run';

/** The transfer: only on the store's own queue, polled by the worker that holds the backups. */
function storeActivities(t: Timings, storeTaskQueue: string) {
  return proxyActivities<TransferActivities>({
    taskQueue: storeTaskQueue,
    startToCloseTimeout: ms(t.transferTimeoutMs),
    heartbeatTimeout: ms(t.transferHeartbeatTimeoutMs),
    retry: retryPolicy(t, t.transferMaximumAttempts),
  });
}

/** What one volume's backup has created, as ledger entries. */
interface VolumeResources {
  snapRef?: LedgerKey;
  copyRef?: LedgerKey;
  attachment?: Attachment;
}

/** `; pruned 3 old versions, freed 12 MiB` for the run's message. */
function pruneText(p: PruneOutcome | undefined): string {
  if (!p) return '';
  if (!p.ok) return `; pruning failed: ${p.error ?? 'unknown error'}`;
  if (p.versionsRemoved === 0 && p.bytesFreed === 0) return '';
  return `; pruned ${p.versionsRemoved} old version(s), freed ${formatBytes(p.bytesFreed)}`;
}

/** The reason an activity failed, in words for the run's result. */
function reason(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
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
    await health.pingHealthcheck.executeWithOptions({ summary: 'healthchecks: success' }, [
      { signal: 'success', message: result.message },
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
      if (v.step === 'done' && v.version) lines.push(`- ${v.name} (${v.region}): version ${v.version}`);
    setCurrentDetails(lines.join('\n'));
  };

  // Settings come from the worker's conf.json, so a schedule needs no input.
  const { api, droplet, cleanup, creates } = apiActivities(t);
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

  const ledger = new Ledger();
  const outcomes: VolumeOutcome[] = [];
  const { swept, deleted } = progress;
  let failure: unknown;
  /** What pruning after the run removed (finish() reads it). */
  let pruning: PruneOutcome | undefined;
  /** The registered client key's fingerprint: the store worker checks its own key_secret against it. */
  let clientKeyFingerprint: string | undefined;
  // Teardown cancels it: nothing waits for a droplet any more, but its create is still settled.
  const dropletScope = new CancellationScope();

  try {
    setPhase('sweeping');
    await sweepLeftovers(swept);

    if (volumes.length === 0) {
      setPhase('finished');
      return finish(`no volumes to back up in ${settings.regions.join(', ')}`);
    }

    setPhase('preparing');
    const keyRef = ledger.record({ kind: 'ssh_key', name: names.sshKey(run) }, 0);
    const key = await ledger.creating(
      create.registerSshKey.executeWithOptions({ summary: 'register the run SSH key' }, [{ run, runId }]),
    );
    ledger.created(keyRef, key.keyId);
    clientKeyFingerprint = key.fingerprint;

    const regions = [...new Set(volumes.map((v) => v.region))];
    const droplets = new Map<string, Promise<{ dropletId: string; ready: DropletReady }>>();
    for (const region of regions) {
      droplets.set(
        region,
        dropletScope.run(() => prepareDroplet(region, key.keyId)),
      );
    }
    // A droplet that never comes up fails its region's volumes, not the whole run.
    for (const p of droplets.values()) p.catch(() => undefined);

    setPhase('backing up');
    await limitConcurrency(settings.concurrency, volumes, async (volume, index) => {
      const outcome = await backupOneVolume(volume, progress.volumes[index] as VolumeProgress, droplets);
      outcomes.push(outcome);
    });
  } catch (err) {
    failure = err;
  } finally {
    setPhase('cleaning up');
    // Non-cancellable: a cancelled run still deletes everything it created.
    await CancellationScope.nonCancellable(() => teardown());
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
  if (failed.length > 0) throw ApplicationFailure.nonRetryable(result.message, 'BackupFailed', result);
  return result;

  // ---- steps ----

  function finish(message: string): BackupResult {
    const usage = ledger.resourceSeconds(Date.now());
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

  async function sweepLeftovers(into: string[]): Promise<void> {
    const leftovers = await api.findLeftovers.executeWithOptions({ summary: 'find leftovers of earlier runs' }, [
      { exceptRun: run },
    ]);
    await deleteInOrder(leftovers, into);
  }

  /** Returns the references that are gone (deleted or never created); records what it deleted in `into`. */
  async function deleteInOrder(refs: readonly ResourceRef[], into: string[]): Promise<ResourceRef[]> {
    return (await deleteResourcesInOrder(cleanup, refs, into)).gone;
  }

  async function prepareDroplet(region: string, sshKeyId: string) {
    const ref = ledger.record({ kind: 'droplet', name: names.droplet(run, region), region }, 0);
    const created = await ledger.creating(
      create.createDroplet.executeWithOptions({ summary: `create droplet in ${region}` }, [
        { run, runId, region, size: settings.dropletSize, image: settings.dropletImage, sshKeyId },
      ]),
    );
    ledger.created(ref, created.dropletId);
    const ready = await droplet.waitForDroplet.executeWithOptions({ summary: `wait for droplet ${created.name}` }, [
      { runId, dropletId: created.dropletId, pollIntervalMs: t.pollIntervalMs },
    ]);
    return { dropletId: created.dropletId, ready };
  }

  async function backupOneVolume(
    volume: SourceVolume,
    p: VolumeProgress,
    droplets: Map<string, Promise<{ dropletId: string; ready: DropletReady }>>,
  ): Promise<VolumeOutcome> {
    const started = Date.now();
    const outcome: VolumeOutcome = {
      name: volume.name,
      region: volume.region,
      ok: false,
      bytesRead: 0,
      bytesTransferred: 0,
      blocksChanged: 0,
      durationMs: 0,
    };
    const step = (s: VolumeStep) => {
      p.step = s;
      showDetails();
    };
    // What this volume has made so far, for its own cleanup if it fails.
    const made: VolumeResources = {};
    try {
      step('snapshot');
      const snapRef = ledger.record({ kind: 'snapshot', name: names.snapshot(run, volume.name) }, volume.sizeGigabytes);
      made.snapRef = snapRef;
      const snap = await ledger.creating(
        create.snapshotVolume.executeWithOptions({ summary: `snapshot ${volume.name}` }, [
          { run, volumeId: volume.id, volumeName: volume.name },
        ]),
      );
      ledger.created(snapRef, snap.snapshotId);

      step('copy');
      const copyRef = ledger.record(
        { kind: 'volume', name: names.copyVolume(run, volume.name), region: volume.region },
        snap.sizeGigabytes,
      );
      made.copyRef = copyRef;
      const copy = await ledger.creating(
        create.createVolumeFromSnapshot.executeWithOptions({ summary: `copy ${volume.name} from its snapshot` }, [
          {
            run,
            volumeName: volume.name,
            region: volume.region,
            snapshotId: snap.snapshotId,
            sizeGigabytes: snap.sizeGigabytes,
          },
        ]),
      );
      ledger.created(copyRef, copy.volumeId);

      const target = await (droplets.get(volume.region) as Promise<{ dropletId: string; ready: DropletReady }>);
      step('attach');
      const attachment = { volumeId: copy.volumeId, dropletId: target.dropletId, region: volume.region };
      ledger.attach(attachment);
      made.attachment = attachment;
      await api.attachVolume.executeWithOptions({ summary: `attach copy of ${volume.name}` }, [
        { ...attachment, pollIntervalMs: t.pollIntervalMs },
      ]);

      step('transfer');
      const sizeBytes = snap.sizeGigabytes * 2 ** 30;
      const transferred = await store.transferVolume.executeWithOptions(
        {
          summary: `transfer ${volume.name} ${formatBytes(sizeBytes)}`,
          scheduleToCloseTimeout: ms(transferBudgetMs(t, sizeBytes)),
        },
        [
          {
            volumeName: volume.name,
            volumeId: volume.id,
            region: volume.region,
            sizeBytes,
            snapshotId: snap.snapshotId,
            snapshotCreatedAt: snap.createdAt,
            host: target.ready.ip,
            port: target.ready.port,
            username: 'root',
            keyRef: runId,
            clientKeyFingerprint,
            stallTimeoutMs: t.transferStallTimeoutMs,
            devicePath: devicePath(copy.name),
            blockSize: settings.blockSize,
          },
        ],
      );
      Object.assign(outcome, {
        bytesRead: transferred.bytesRead,
        bytesTransferred: transferred.bytesOnWire,
        blocksChanged: transferred.blocksChanged,
        image: transferred.imagePath,
        storeKey: transferred.storeKey,
        version: transferred.versionId,
      });
      p.version = transferred.versionId;

      step('detach');
      await api.detachVolume.executeWithOptions({ summary: `detach copy of ${volume.name}` }, [
        { ...attachment, pollIntervalMs: t.pollIntervalMs },
      ]);
      ledger.detached(attachment);

      step('delete copy');
      await cleanup.deleteResource.executeWithOptions({ summary: `delete copy of ${volume.name}` }, [
        ledger.ref(copyRef),
      ]);
      ledger.deleted(copyRef, Date.now());
      deleted.push(describeRef(ledger.ref(copyRef)));

      step('delete snapshot');
      await cleanup.deleteResource.executeWithOptions({ summary: `delete snapshot of ${volume.name}` }, [
        ledger.ref(snapRef),
      ]);
      ledger.deleted(snapRef, Date.now());
      deleted.push(describeRef(ledger.ref(snapRef)));

      step('done');
      outcome.ok = true;
    } catch (err) {
      if (isCancellation(err)) throw err;
      step('failed');
      outcome.error = reason(err);
      log.warn('volume failed; continuing with the others', { volume: volume.name, error: outcome.error });
      // Non-cancellable: once started, a cancel of the run waits for it rather than leaving half of it to teardown.
      if (patched(RELEASE_FAILED_VOLUME)) await CancellationScope.nonCancellable(() => releaseVolume(volume, made));
    }
    outcome.durationMs = Date.now() - started;
    return outcome;
  }

  /**
   * A failed volume's copy (detached first) and snapshot, deleted now: they would otherwise cost money and hold one
   * of the droplet's 7 attachments until the end of the run. Whatever cannot be deleted here is left to teardown.
   */
  async function releaseVolume(volume: SourceVolume, made: VolumeResources): Promise<void> {
    try {
      if (made.attachment) {
        await cleanup.detachVolume.executeWithOptions({ summary: `detach copy of failed ${volume.name}` }, [
          { ...made.attachment, pollIntervalMs: t.pollIntervalMs },
        ]);
        ledger.detached(made.attachment);
      }
      for (const [key, what] of [
        [made.copyRef, 'copy'],
        [made.snapRef, 'snapshot'],
      ] as const) {
        if (key === undefined) continue;
        const outcome = await cleanup.deleteResource.executeWithOptions(
          { summary: `delete ${what} of failed ${volume.name}` },
          [ledger.ref(key)],
        );
        ledger.deleted(key, Date.now());
        if (outcome === 'deleted') deleted.push(describeRef(ledger.ref(key)));
      }
    } catch (err) {
      log.warn('could not clean up a failed volume; the run will at its end', {
        volume: volume.name,
        error: reason(err),
      });
    }
  }

  async function teardown(): Promise<void> {
    if (settleCreates) {
      dropletScope.cancel();
      await ledger.settled();
    }
    for (const a of ledger.attachments()) {
      try {
        await cleanup.detachVolume.executeWithOptions({ summary: `detach volume ${a.volumeId}` }, [
          { ...a, pollIntervalMs: t.pollIntervalMs },
        ]);
        ledger.detached(a);
      } catch (err) {
        // Deleting the droplet detaches it too.
        log.warn('detach failed during cleanup', { error: reason(err) });
      }
    }
    const gone = await deleteInOrder(ledger.live(), deleted);
    for (const ref of gone) ledger.deleted(ref, Date.now());
  }
}
