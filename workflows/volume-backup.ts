// One volume's backup, shared by the run (workflows/backup.ts), which runs it inline, and by the per-volume child
// workflow (workflows/volume-child.ts) a large run fans out to so that no history grows past Temporal's limits. Every
// resource is recorded in the context's ledger before it is created. Workflow code.
import { CancellationScope, isCancellation, log, patched, proxyActivities } from '@temporalio/workflow';
import type { SourceVolume } from '../activities/digitalocean/activities';
import type { RunSettings } from '../activities/settings';
import type { TransferActivities } from '../activities/transfer/activity';
import { devicePath, names } from '../common/names';
import { ms, retryPolicy } from './activity-options';
import { deletionOf, describeRef } from './deletion';
import type { ApiActivities, ReadyDroplet, SshTarget } from './ephemeral';
import { FREEZE_HOOKS, hookForVolume, withFreeze } from './freeze';
import { FSCK_AFTER_TRANSFER, fsckAfterTransfer, wantsFsck } from './fsck-step';
import type { Attachment, Ledger, LedgerKey } from './ledger';
import type { Slots } from './slots';
import { transferBudgetMs } from './transfer-budget';
import type { Timings, VolumeOutcome, VolumeProgress, VolumeStep } from './types';
import { formatBytes, reason } from './util';

/** RELEASE_FAILED_VOLUME: a failed volume's copy and snapshot are deleted at once, not at the end of the run. */
export const RELEASE_FAILED_VOLUME = 'release-failed-volume';

/** The transfer: only on the store's own queue, polled by the worker that holds the backups. */
export function storeActivities(t: Timings, storeTaskQueue: string) {
  return proxyActivities<TransferActivities>({
    taskQueue: storeTaskQueue,
    startToCloseTimeout: ms(t.transferTimeoutMs),
    heartbeatTimeout: ms(t.transferHeartbeatTimeoutMs),
    retry: retryPolicy(t, t.transferMaximumAttempts),
  });
}

/** What a volume's backup works with: the run's names, settings, ledger and proxies, and its region's droplet. */
export interface VolumeBackupContext {
  timings: Timings;
  /** The run's tag in names, and the run id the SSH keys are derived from. */
  run: string;
  runId: string;
  settings: RunSettings;
  ledger: Ledger;
  api: ApiActivities['api'];
  /** Creates (waited for when cancelled, under the settle-creates patch). */
  create: ApiActivities['creates'];
  cleanup: ApiActivities['cleanup'];
  store: ReturnType<typeof storeActivities>;
  /** The droplet the volume's copy is attached to (it may still be booting). */
  droplet: (volume: SourceVolume) => Promise<ReadyDroplet>;
  /** The volume is detached from the droplet `droplet()` gave it (a region with several balances them by it). */
  dropletDone?: (volume: SourceVolume, dropletId: string) => void;
  sshTarget: (droplet: ReadyDroplet) => SshTarget;
  /** Resources deleted, as `describeRef` text. */
  deleted: string[];
  /** The volume's progress entry changed (a step): the run shows it. */
  onChange: () => void;
  /**
   * PIPELINED_VOLUMES (backup.ts): a volume holds one of these from its attach to its detach, so its snapshot and copy
   * are made beforehand, while other volumes transfer. Absent: the run's concurrency alone paces the volumes.
   */
  attachSlots?: Slots;
  /**
   * PIPELINED_VOLUMES: the queue of a droplet's actions. DigitalOcean runs one action at a time per droplet; asking
   * while one is pending only earns a 422 and a request spent, so attaches and detaches wait their turn here.
   */
  dropletActions?: (dropletId: string) => Slots;
}

const DETACH_FIRST = 1;

/**
 * `act` in its droplet's action queue, when the run has one. Detaches go first (`DETACH_FIRST`): one frees a volume's
 * place for the next, where an attach only takes one.
 */
function inTurn<T>(ctx: VolumeBackupContext, dropletId: string, act: () => Promise<T>, priority = 0): Promise<T> {
  return ctx.dropletActions ? ctx.dropletActions(dropletId).using(act, priority) : act();
}

/** What one volume's backup has created, as ledger entries. */
interface VolumeResources {
  snapRef?: LedgerKey;
  copyRef?: LedgerKey;
  attachment?: Attachment;
}

/**
 * One volume, as in the runbook: snapshot (inside its freeze, when it has a hook) → copy → attach → transfer →
 * detach → delete copy → delete snapshot (→ fsck). A failure fails this volume only: what it made is released at
 * once; a cancellation is rethrown for the run's teardown.
 */
export async function backupOneVolume(
  ctx: VolumeBackupContext,
  volume: SourceVolume,
  p: VolumeProgress,
): Promise<VolumeOutcome> {
  const { timings: t, run, runId, settings, ledger, create, api, cleanup, store, deleted } = ctx;
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
    ctx.onChange();
  };
  // What this volume has made so far, for its own cleanup if it fails.
  const made: VolumeResources = {};
  let releaseSlot: (() => void) | undefined;
  let onDroplet: string | undefined;
  const leaveDroplet = () => {
    if (onDroplet !== undefined) ctx.dropletDone?.(volume, onDroplet);
    onDroplet = undefined;
  };
  try {
    step('snapshot');
    const snapRef = ledger.record({ kind: 'snapshot', name: names.snapshot(run, volume.name) }, volume.sizeGigabytes);
    made.snapRef = snapRef;
    const createSnapshot = () =>
      ledger.creating(
        create.snapshotVolume.executeWithOptions({ summary: `snapshot ${volume.name}` }, [
          { run, volumeId: volume.id, volumeName: volume.name },
        ]),
      );
    // FREEZE_HOOKS: a volume with a hook (conf.json `hooks`) is snapshotted inside its freeze, thawed at once.
    const hook = settings.hooks?.length && patched(FREEZE_HOOKS) ? await hookForVolume(t, volume.name) : null;
    const freezeContext = { timings: t, runId, volumeName: volume.name, onStep: step };
    const { value: snap, consistency } = await withFreeze(hook, freezeContext, createSnapshot);
    if (consistency) Object.assign(outcome, { frozen: (p.frozen = consistency.frozen), consistency: consistency.note });
    // Billed by the data it holds; an answer without that size keeps the volume's (an upper bound).
    ledger.created(snapRef, snap.snapshotId, snap.storedGigabytes || undefined, snap.requestedAtMs);

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
    ledger.created(copyRef, copy.volumeId, undefined, copy.requestedAtMs);

    if (ctx.attachSlots) {
      step('waiting to attach');
      releaseSlot = await ctx.attachSlots.acquire();
    }
    const target = await ctx.droplet(volume);
    onDroplet = target.dropletId;
    step('attach');
    const attachment = { volumeId: copy.volumeId, dropletId: target.dropletId, region: volume.region };
    ledger.attach(attachment);
    made.attachment = attachment;
    await inTurn(ctx, target.dropletId, () =>
      api.attachVolume.executeWithOptions({ summary: `attach copy of ${volume.name}` }, [
        { ...attachment, pollIntervalMs: t.pollIntervalMs },
      ]),
    );

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
          ...ctx.sshTarget(target),
          devicePath: devicePath(copy.name),
          blockSize: settings.blockSize,
          ...(outcome.frozen ? { frozen: true } : {}),
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
    await inTurn(
      ctx,
      target.dropletId,
      () =>
        api.detachVolume.executeWithOptions({ summary: `detach copy of ${volume.name}` }, [
          { ...attachment, pollIntervalMs: t.pollIntervalMs },
        ]),
      DETACH_FIRST,
    );
    ledger.detached(attachment);
    leaveDroplet();
    releaseSlot?.();

    step('delete copy');
    const copyGone = await cleanup.deleteResource.executeWithOptions({ summary: `delete copy of ${volume.name}` }, [
      ledger.ref(copyRef),
    ]);
    ledger.deleted(copyRef, deletionOf(copyGone, Date.now()).answeredAtMs);
    deleted.push(describeRef(ledger.ref(copyRef)));

    step('delete snapshot');
    const snapGone = await cleanup.deleteResource.executeWithOptions({ summary: `delete snapshot of ${volume.name}` }, [
      ledger.ref(snapRef),
    ]);
    ledger.deleted(snapRef, deletionOf(snapGone, Date.now()).answeredAtMs);
    deleted.push(describeRef(ledger.ref(snapRef)));

    // After the copy and snapshot are gone (they cost while the checker runs); a failed check fails nothing.
    if (wantsFsck(settings) && patched(FSCK_AFTER_TRANSFER))
      await fsckAfterTransfer(t, settings, outcome, p, () => step('fsck'));

    step('done');
    outcome.ok = true;
  } catch (err) {
    if (isCancellation(err)) throw err;
    step('failed');
    outcome.error = reason(err);
    log.warn('volume failed; continuing with the others', { volume: volume.name, error: outcome.error });
    // Non-cancellable: once started, a cancel of the run waits for it rather than leaving half of it to teardown.
    if (patched(RELEASE_FAILED_VOLUME)) await CancellationScope.nonCancellable(() => releaseVolume(ctx, volume, made));
  } finally {
    leaveDroplet();
    releaseSlot?.();
  }
  outcome.durationMs = Date.now() - started;
  return outcome;
}

/**
 * A failed volume's copy (detached first) and snapshot, deleted now: they would otherwise cost money and hold one
 * of the droplet's 7 attachments until the end of the run. Whatever cannot be deleted here is left to teardown.
 */
async function releaseVolume(ctx: VolumeBackupContext, volume: SourceVolume, made: VolumeResources): Promise<void> {
  const { timings: t, ledger, cleanup, deleted } = ctx;
  try {
    const attachment = made.attachment;
    if (attachment) {
      await inTurn(
        ctx,
        attachment.dropletId,
        () =>
          cleanup.detachVolume.executeWithOptions({ summary: `detach copy of failed ${volume.name}` }, [
            { ...attachment, pollIntervalMs: t.pollIntervalMs },
          ]),
        DETACH_FIRST,
      );
      ledger.detached(attachment);
    }
    for (const [key, what] of [
      [made.copyRef, 'copy'],
      [made.snapRef, 'snapshot'],
    ] as const) {
      if (key === undefined) continue;
      const gone = deletionOf(
        await cleanup.deleteResource.executeWithOptions({ summary: `delete ${what} of failed ${volume.name}` }, [
          ledger.ref(key),
        ]),
        Date.now(),
      );
      ledger.deleted(key, gone.answeredAtMs);
      if (gone.outcome === 'deleted') deleted.push(describeRef(ledger.ref(key)));
    }
  } catch (err) {
    log.warn('could not clean up a failed volume; the run will at its end', {
      volume: volume.name,
      error: reason(err),
    });
  }
}
