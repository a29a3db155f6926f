// The restore run (`dosvob restore VOLUME --to-volume NAME`), as in the runbook: choose the version and check every
// saved block it needs → check the target name is free → sweep leftovers, register the run's key, boot a droplet →
// create the target volume → attach it to the droplet → write the version onto the device, read it back and agree on
// its digest → detach → (attach to the user's droplet) → delete the droplet and the key. The backup's own pieces do
// the ephemeral part (ephemeral.ts: ledger, droplet preparation, teardown).
//
// A target that was not verified is not a restore: failure or cancellation deletes it with everything else (unless
// `keepPartial`), and only a volume whose description names this run is ever deleted. Runs under the installation's
// run workflow id, so never beside a backup (they share the ephemeral namespace and the store).
import {
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RestoreTargetActivities, AttachTarget } from '../activities/digitalocean/restore-target';
import type { RestoreToDeviceResult, RestoreTransferActivities } from '../activities/restore/activity';
import type { StoreOpsActivities } from '../activities/store-ops/activities';
import type { ChosenVersion } from '../activities/store-ops/choose-version';
import type { ResourceSeconds } from '../common/pricing';
import { estimateCostUsd } from '../common/pricing';
import { devicePath, legacyRunKey, runKey, runTag } from '../common/names';
import { DOSVOB_OUTCOME, DOSVOB_VOLUMES, type Outcome } from '../common/search-attributes';
import { ms, retryPolicy } from './activity-options';
import { progressQuery } from './queries';
import { describeRef } from './deletion';
import { apiActivities, doProxies, EphemeralResources } from './ephemeral';
import { transferBudgetMs } from './transfer-budget';
import { DEFAULT_TIMINGS, type RunProgress, type Timings, type VolumeProgress, type VolumeStep } from './types';
import { formatBytes, reason } from './util';

export interface RestoreInput {
  /** A volume name, store key or `name@region`, as `dosvob versions` shows them. */
  volume: string;
  versionId?: string;
  /** The newest version at or before this instant (ISO). */
  at?: string;
  /** The new volume's name: must not exist in its region. */
  toVolume: string;
  /** Default: the backed-up volume's region. */
  region?: string;
  /** A droplet (name or id) in that region to attach the restored volume to. */
  attachTo?: string;
  /** On failure or cancellation keep the unfinished target volume for inspection instead of deleting it. */
  keepPartial?: boolean;
  timings?: Partial<Timings>;
}

export interface RestoreResult {
  run: string;
  storeKey: string;
  versionId: string;
  /** When the version was committed. */
  versionTime: string;
  target: { name: string; region: string; volumeId: string; sizeGigabytes: number; attachedTo?: AttachTarget };
  bytesWritten: number;
  bytesOnWire: number;
  blocksWritten: number;
  verifiedBlocks: number;
  /** SHA-256 over the version's block hashes: what the device was read back as. */
  digest: string;
  swept: string[];
  deleted: string[];
  durationMs: number;
  resourceSeconds: ResourceSeconds;
  estimatedCostUsd: number;
  message: string;
}

/** What a failed restore reports in its failure's details. */
export interface RestoreFailureDetails {
  /** The unfinished target, when `keepPartial` kept it. */
  keptPartial?: { name: string; region: string; volumeId?: string };
  /** The finished, verified target, when only the final attach to the user's droplet failed. */
  restored?: { name: string; region: string; volumeId: string };
  deleted: string[];
}

function innerType(err: unknown): string {
  let type = 'RestoreFailed';
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (e instanceof ApplicationFailure && e.type) type = e.type;
  }
  return type;
}

function gibFor(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / 2 ** 30));
}

export async function restoreWorkflow(input: RestoreInput): Promise<RestoreResult> {
  const t: Timings = { ...DEFAULT_TIMINGS, ...input.timings };
  const { runId, startTime } = workflowInfo();
  const progress: RunProgress = { phase: 'planning', volumes: [], swept: [], deleted: [] };
  setHandler(progressQuery, () => progress);
  upsertSearchAttributes([
    { key: DOSVOB_OUTCOME, value: 'running' satisfies Outcome },
    { key: DOSVOB_VOLUMES, value: [input.volume] },
  ]);
  const lines: string[] = [];
  const show = (text?: string) => {
    if (text) lines.push(text);
    const v = progress.volumes[0];
    setCurrentDetails(
      [
        `**${progress.phase}** — restore ${input.volume} to the new volume ${input.toVolume}` +
          (v ? ` (${v.region}, ${formatBytes(v.sizeBytes)}): ${v.step}` : ''),
        ...lines.map((l) => `- ${l}`),
      ].join('\n'),
    );
  };
  const setPhase = (phase: RunProgress['phase']) => {
    progress.phase = phase;
    show();
  };
  const step = (s: VolumeStep) => {
    const v = progress.volumes[0];
    if (v) v.step = s;
    show();
  };

  const proxies = apiActivities(t);
  const { api } = proxies;
  const settings = await api.resolveRunSettings({});
  const run = settings.installationId ? runTag(settings.installationId, runKey(runId)) : legacyRunKey(runId);
  // Steps, creates (waited for when cancelled, so teardown knows what they made) and deletions, as the backup's.
  const target = doProxies<RestoreTargetActivities>(t);
  const storeOps = proxyActivities<StoreOpsActivities & Pick<RestoreTransferActivities, 'checkVersionForRestore'>>({
    taskQueue: settings.storeTaskQueue,
    // Checking the saved blocks reads them all; heartbeats show it is alive and carry cancellation.
    startToCloseTimeout: '24 hours',
    heartbeatTimeout: ms(t.transferHeartbeatTimeoutMs),
    retry: retryPolicy(t, 3),
  });
  const writer = proxyActivities<RestoreTransferActivities>({
    taskQueue: settings.storeTaskQueue,
    startToCloseTimeout: ms(t.transferTimeoutMs),
    heartbeatTimeout: ms(t.transferHeartbeatTimeoutMs),
    retry: retryPolicy(t, t.transferMaximumAttempts),
  });

  const ephemeral = new EphemeralResources({
    proxies,
    timings: t,
    run,
    runId,
    dropletSize: settings.dropletSize,
    dropletImage: settings.dropletImage,
    settleCreates: true,
    deleted: progress.deleted,
  });
  const { ledger } = ephemeral;
  let chosen: ChosenVersion | undefined;
  let region: string | undefined;
  let targetKey: number | undefined;
  let targetId: string | undefined;
  let written: RestoreToDeviceResult | undefined;
  let attachedTo: AttachTarget | undefined;
  let verified = false;
  let failure: unknown;
  let keptPartial = false;

  try {
    await api.checkAccess.executeWithOptions({ summary: 'check the DigitalOcean token' }, []);
    chosen = await storeOps.chooseRestoreVersion.executeWithOptions(
      {
        summary:
          `choose the version of ${input.volume}` +
          (input.versionId ? ` (${input.versionId})` : input.at ? ` at ${input.at}` : ''),
      },
      [{ volume: input.volume, versionId: input.versionId, at: input.at }],
    );
    region = input.region ?? chosen.region ?? undefined;
    if (!region) {
      throw ApplicationFailure.nonRetryable(
        `the backups of ${chosen.storeKey} do not say which region they came from: give --region`,
        'ConfigurationError',
      );
    }
    const sizeGigabytes = gibFor(chosen.sizeBytes);
    const volume: VolumeProgress = {
      name: input.toVolume,
      region,
      step: 'check version',
      sizeBytes: chosen.sizeBytes,
      version: chosen.versionId,
    };
    progress.volumes = [volume];
    show(`version ${chosen.versionId} of ${chosen.storeKey}, committed ${chosen.time}`);

    // Before anything is created, so that a damaged version or a taken name costs nothing.
    const check = await storeOps.checkVersionForRestore.executeWithOptions(
      { summary: `check the saved blocks of ${chosen.storeKey} version ${chosen.versionId}` },
      [{ storeKey: chosen.storeKey, versionId: chosen.versionId }],
    );
    show(
      `${check.dataBlocks} blocks hold data (${formatBytes(check.dataBytes)}); ${check.chunksChecked} saved blocks checked`,
    );
    const checked = await target.api.checkRestoreTarget.executeWithOptions(
      { summary: `check that ${input.toVolume} is free in ${region}` },
      [{ name: input.toVolume, region, runId, attachTo: input.attachTo }],
    );

    setPhase('sweeping');
    await ephemeral.sweepLeftovers(progress.swept);

    setPhase('preparing');
    const key = await ephemeral.registerKey();
    const dropletReady = ephemeral.droplet(region, key.keyId);

    setPhase('restoring');
    step('create volume');
    targetKey = ledger.record({ kind: 'volume', name: input.toVolume, region }, sizeGigabytes, { keptApart: true });
    const created = await ledger.creating(
      target.creates.createRestoreTarget.executeWithOptions(
        { summary: `create volume ${input.toVolume} (${sizeGigabytes} GiB, ${region})` },
        [
          {
            name: input.toVolume,
            region,
            runId,
            sizeGigabytes,
            description: `dosvob restore of ${chosen.storeKey} version ${chosen.versionId}`,
          },
        ],
      ),
    );
    targetId = created.volumeId;
    ledger.created(targetKey, created.volumeId);

    const droplet = await dropletReady;
    step('attach');
    const attachment = { volumeId: created.volumeId, dropletId: droplet.dropletId, region };
    ledger.attach(attachment);
    await api.attachVolume.executeWithOptions({ summary: `attach ${input.toVolume} to the restore droplet` }, [
      { ...attachment, pollIntervalMs: t.pollIntervalMs },
    ]);

    step('transfer');
    written = await writer.restoreToDevice.executeWithOptions(
      {
        summary: `write ${chosen.storeKey} version ${chosen.versionId} onto ${input.toVolume} (${formatBytes(check.dataBytes)} of data)`,
        scheduleToCloseTimeout: ms(transferBudgetMs(t, check.dataBytes)),
      },
      [
        {
          storeKey: chosen.storeKey,
          versionId: chosen.versionId,
          ...ephemeral.sshTarget(droplet),
          devicePath: devicePath(input.toVolume),
        },
      ],
    );
    show(
      `written and read back: ${written.blocksWritten} blocks, ${formatBytes(written.bytesWritten)} ` +
        `(${formatBytes(written.bytesOnWire)} on the wire), digest ${written.digest.slice(0, 16)}…`,
    );

    step('detach');
    await api.detachVolume.executeWithOptions({ summary: `detach ${input.toVolume} from the restore droplet` }, [
      { ...attachment, pollIntervalMs: t.pollIntervalMs },
    ]);
    ledger.detached(attachment);
    verified = true;

    if (checked.attachTo) {
      step('attach to droplet');
      // Not in the ledger's attachments: teardown must never detach the restored volume from the user's droplet.
      await api.attachVolume.executeWithOptions(
        { summary: `attach ${input.toVolume} to droplet ${checked.attachTo.name}` },
        [
          {
            volumeId: created.volumeId,
            dropletId: checked.attachTo.dropletId,
            region,
            pollIntervalMs: t.pollIntervalMs,
          },
        ],
      );
      attachedTo = checked.attachTo;
    }
    step('done');
  } catch (err) {
    failure = err;
    if (progress.volumes[0] && !verified) step('failed');
  } finally {
    setPhase('cleaning up');
    // Non-cancellable: a cancelled restore still deletes everything it created, the unfinished target included.
    await CancellationScope.nonCancellable(async () => {
      await ephemeral.teardown();
      if (targetKey === undefined || verified) return;
      if (input.keepPartial) {
        keptPartial = true;
        return;
      }
      try {
        const outcome = await target.cleanup.deleteRestoreTarget.executeWithOptions(
          { summary: `delete the unfinished volume ${input.toVolume}` },
          [{ name: input.toVolume, region: region ?? '', runId, id: targetId }],
        );
        ledger.deleted(targetKey, Date.now());
        if (outcome === 'deleted') progress.deleted.push(describeRef(ledger.ref(targetKey)));
      } catch (err) {
        log.error('could not delete the unfinished target volume', { volume: input.toVolume, error: reason(err) });
      }
    });
    setPhase('finished');
  }

  if (failure !== undefined) {
    upsertSearchAttributes([
      { key: DOSVOB_OUTCOME, value: (isCancellation(failure) ? 'cancelled' : 'failed') satisfies Outcome },
    ]);
    const details: RestoreFailureDetails = {
      deleted: progress.deleted,
      ...(keptPartial && region ? { keptPartial: { name: input.toVolume, region, volumeId: targetId } } : {}),
      ...(verified && region && targetId ? { restored: { name: input.toVolume, region, volumeId: targetId } } : {}),
    };
    const note = keptPartial
      ? `; the unfinished volume ${input.toVolume} was kept (--keep-partial): it is NOT a verified restore`
      : verified
        ? `; ${input.toVolume} was restored and verified, but is not attached: attach it yourself`
        : '';
    show(`failed: ${reason(failure)}${note}`);
    if (isCancellation(failure)) throw failure;
    // The innermost failure's type (VolumeNameInUse, VersionDamaged, StoreRequestInvalid, ...) says what went wrong.
    throw ApplicationFailure.nonRetryable(`restore failed: ${reason(failure)}${note}`, innerType(failure), details);
  }

  const c = chosen as ChosenVersion;
  const w = written as RestoreToDeviceResult;
  const now = Date.now();
  if (targetKey !== undefined) ledger.deleted(targetKey, now); // from here on it is the user's volume, and cost
  const usage = ledger.resourceSeconds(now);
  upsertSearchAttributes([{ key: DOSVOB_OUTCOME, value: 'ok' satisfies Outcome }]);
  const result: RestoreResult = {
    run,
    storeKey: c.storeKey,
    versionId: c.versionId,
    versionTime: c.time,
    target: {
      name: input.toVolume,
      region: region as string,
      volumeId: targetId as string,
      sizeGigabytes: gibFor(c.sizeBytes),
      ...(attachedTo ? { attachedTo } : {}),
    },
    bytesWritten: w.bytesWritten,
    bytesOnWire: w.bytesOnWire,
    blocksWritten: w.blocksWritten,
    verifiedBlocks: w.verifiedBlocks,
    digest: w.digest,
    swept: progress.swept,
    deleted: progress.deleted,
    durationMs: now - startTime.getTime(),
    resourceSeconds: usage,
    estimatedCostUsd: Math.round(estimateCostUsd(usage, settings.prices) * 1e6) / 1e6,
    message:
      `restored ${c.storeKey} version ${c.versionId} (${c.time}) to the new volume ${input.toVolume} in ${region}` +
      `, verified` +
      (attachedTo ? `, attached to ${attachedTo.name}` : ', detached'),
  };
  show(result.message);
  return result;
}
