// The backup run, as in the runbook: sweep leftovers, make the run's keys, one droplet per region,
// then per volume snapshot → copy → attach → transfer → detach → delete copy → delete snapshot,
// and finally delete the droplets and the key. Every resource is recorded in the ledger before it
// is created, and the ledger is torn down on success, failure and cancellation alike.
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowCancellationType,
  ParentClosePolicy,
  defineQuery,
  isCancellation,
  log,
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
import { devicePath, names, runKey } from '../common/names';
import { estimateCostUsd } from '../common/pricing';
import { DOSVOB_OUTCOME, DOSVOB_VOLUMES, type Outcome } from '../common/search-attributes';
import { BACKUP_WORKFLOW_ID } from '../common/task-queues';
import { Ledger } from './ledger';
import { formatBytes, limitConcurrency } from './util';
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

const ms = (n: number) => `${Math.max(1, Math.round(n))}ms`;

function retryPolicy(t: Timings, maximumAttempts: number) {
  return {
    initialInterval: ms(t.retryInitialIntervalMs),
    maximumInterval: ms(t.retryMaximumIntervalMs),
    backoffCoefficient: 2,
    maximumAttempts,
  };
}

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
  return { api, droplet, cleanup };
}

/** The transfer: only on the store's own queue, polled by the worker that holds the backups. */
function storeActivities(t: Timings, storeTaskQueue: string) {
  return proxyActivities<TransferActivities>({
    taskQueue: storeTaskQueue,
    startToCloseTimeout: ms(t.transferTimeoutMs),
    heartbeatTimeout: ms(t.transferHeartbeatTimeoutMs),
    retry: retryPolicy(t, t.transferMaximumAttempts),
  });
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
  const run = runKey(runId);
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
    setCurrentDetails(lines.join('\n'));
  };

  // Settings come from the worker's conf.json, so a schedule needs no input.
  const { api, droplet, cleanup } = apiActivities(t);
  const settings: RunSettings = await api.resolveRunSettings({
    regions: input.regions,
    include: input.include,
    exclude: input.exclude,
  });
  const store = storeActivities(t, settings.storeTaskQueue);
  await api.checkAccess.executeWithOptions({ summary: 'check the DigitalOcean token' }, []);
  const volumes: SourceVolume[] = await api.listSourceVolumes.executeWithOptions(
    { summary: `list volumes in ${settings.regions.join(', ')}` },
    [{ regions: settings.regions, include: settings.include, exclude: settings.exclude }],
  );
  upsertSearchAttributes([{ key: DOSVOB_VOLUMES, value: volumes.map((v) => v.name) }]);
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

  try {
    setPhase('sweeping');
    await sweepLeftovers(swept);

    if (volumes.length === 0) {
      setPhase('finished');
      return finish(`no volumes to back up in ${settings.regions.join(', ')}`);
    }

    setPhase('preparing');
    const keyRef = ledger.record({ kind: 'ssh_key', name: names.sshKey(run) }, 0);
    const key = await api.registerSshKey.executeWithOptions({ summary: 'register the run SSH key' }, [{ run, runId }]);
    ledger.created(keyRef, key.keyId);

    const regions = [...new Set(volumes.map((v) => v.region))];
    const droplets = new Map<string, Promise<{ dropletId: string; ready: DropletReady }>>();
    for (const region of regions) droplets.set(region, prepareDroplet(region, key.keyId));
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
  const result = finish(
    failed.length === 0
      ? `${outcomes.length} of ${volumes.length} volumes backed up`
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
    };
  }

  async function sweepLeftovers(into: string[]): Promise<void> {
    const leftovers = await api.findLeftovers.executeWithOptions({ summary: 'find leftovers of earlier runs' }, [
      { exceptRun: run },
    ]);
    await deleteInOrder(leftovers, into);
  }

  function describeRef(r: ResourceRef): string {
    return `${r.kind.replace('_', ' ')} ${r.name || r.id}`;
  }

  /**
   * DigitalOcean's order: droplets (which detaches), then volumes (409 until detached: retried), snapshots, keys.
   * Records what it deleted in `into`; returns the references that are gone (deleted or never created).
   */
  async function deleteInOrder(refs: readonly ResourceRef[], into: string[]): Promise<ResourceRef[]> {
    const gone: ResourceRef[] = [];
    for (const kind of ['droplet', 'volume', 'snapshot', 'ssh_key'] as const) {
      await Promise.all(
        refs
          .filter((r) => r.kind === kind)
          .map(async (r) => {
            try {
              const outcome = await cleanup.deleteResource.executeWithOptions({ summary: `delete ${describeRef(r)}` }, [
                r,
              ]);
              if (outcome === 'deleted') into.push(describeRef(r));
              gone.push(r);
            } catch (err) {
              log.error('could not delete a resource; the next run will sweep it', {
                resource: describeRef(r),
                error: reason(err),
              });
            }
          }),
      );
    }
    return gone;
  }

  async function prepareDroplet(region: string, sshKeyId: string) {
    const ref = ledger.record({ kind: 'droplet', name: names.droplet(run, region), region }, 0);
    const created = await api.createDroplet.executeWithOptions({ summary: `create droplet in ${region}` }, [
      { run, runId, region, size: settings.dropletSize, image: settings.dropletImage, sshKeyId },
    ]);
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
    try {
      step('snapshot');
      const snapRef = ledger.record({ kind: 'snapshot', name: names.snapshot(run, volume.name) }, volume.sizeGigabytes);
      const snap = await api.snapshotVolume.executeWithOptions({ summary: `snapshot ${volume.name}` }, [
        { run, volumeId: volume.id, volumeName: volume.name },
      ]);
      ledger.created(snapRef, snap.snapshotId);

      step('copy');
      const copyRef = ledger.record(
        { kind: 'volume', name: names.copyVolume(run, volume.name), region: volume.region },
        snap.sizeGigabytes,
      );
      const copy = await api.createVolumeFromSnapshot.executeWithOptions(
        { summary: `copy ${volume.name} from its snapshot` },
        [
          {
            run,
            volumeName: volume.name,
            region: volume.region,
            snapshotId: snap.snapshotId,
            sizeGigabytes: snap.sizeGigabytes,
          },
        ],
      );
      ledger.created(copyRef, copy.volumeId);

      const target = await (droplets.get(volume.region) as Promise<{ dropletId: string; ready: DropletReady }>);
      step('attach');
      const attachment = { volumeId: copy.volumeId, dropletId: target.dropletId, region: volume.region };
      ledger.attach(attachment);
      await api.attachVolume.executeWithOptions({ summary: `attach copy of ${volume.name}` }, [
        { ...attachment, pollIntervalMs: t.pollIntervalMs },
      ]);

      step('transfer');
      const sizeBytes = snap.sizeGigabytes * 2 ** 30;
      const transferred = await store.transferVolume.executeWithOptions(
        { summary: `transfer ${volume.name} ${formatBytes(sizeBytes)}` },
        [
          {
            volumeName: volume.name,
            volumeId: volume.id,
            sizeBytes,
            snapshotId: snap.snapshotId,
            snapshotCreatedAt: snap.createdAt,
            host: target.ready.ip,
            port: target.ready.port,
            username: 'root',
            hostPublicKey: target.ready.hostPublicKey,
            keyRef: runId,
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
      });

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
    }
    outcome.durationMs = Date.now() - started;
    return outcome;
  }

  async function teardown(): Promise<void> {
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
