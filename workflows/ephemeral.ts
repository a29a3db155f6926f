// The ephemeral side of a run, shared by every workflow that needs a droplet to reach a volume (the backup, the
// restore): the DigitalOcean activity proxies, the sweep of earlier runs' leftovers, the run's SSH key, one droplet
// per region with a pinned host key, and the teardown of everything recorded in the ledger. Workflow code.
import { ActivityCancellationType, CancellationScope, log, proxyActivities } from '@temporalio/workflow';
import type { DigitalOceanActivities, DropletReady, ResourceRef } from '../activities/digitalocean/activities';
import type { SettingsActivities } from '../activities/settings';
import { names } from '../common/names';
import { ms, retryPolicy } from './activity-options';
import { deleteInOrder, type DeletionOutcome } from './deletion';
import { Ledger } from './ledger';
import type { Timings } from './types';
import { reason } from './util';

/**
 * Proxies of DigitalOcean activities (any worker on the main queue), one per way of calling them: `api` for steps,
 * `droplet` for the long wait for a droplet, `cleanup` for deletions (they persist longer: leftovers cost money),
 * `creates` for creates.
 */
export function doProxies<A extends object>(t: Timings) {
  const api = proxyActivities<A>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    heartbeatTimeout: ms(Math.max(t.apiHeartbeatTimeoutMs, t.pollIntervalMs * 3)),
    retry: retryPolicy(t, t.apiMaximumAttempts),
  });
  const droplet = proxyActivities<A>({
    startToCloseTimeout: ms(t.dropletReadyTimeoutMs),
    heartbeatTimeout: ms(Math.max(t.apiHeartbeatTimeoutMs, t.pollIntervalMs * 3)),
    retry: retryPolicy(t, t.apiMaximumAttempts),
  });
  const cleanup = proxyActivities<A>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    retry: retryPolicy(t, t.cleanupMaximumAttempts),
  });
  // A cancelled create is waited for (the SDK's default, TRY_CANCEL, would not): what it made must be
  // known, or at least have appeared under its name, before teardown looks for it. The creates do not
  // act on the cancellation their heartbeats bring: they finish, and the workflow gets their result.
  const creates = proxyActivities<A>({
    startToCloseTimeout: ms(t.apiStepTimeoutMs),
    heartbeatTimeout: ms(Math.max(t.apiHeartbeatTimeoutMs, t.pollIntervalMs * 3)),
    retry: retryPolicy(t, t.apiMaximumAttempts),
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
  return { api, droplet, cleanup, creates };
}

/** DigitalOcean (and settings) activities: any worker on the main queue. */
export function apiActivities(t: Timings) {
  return doProxies<DigitalOceanActivities & SettingsActivities>(t);
}

export type ApiActivities = ReturnType<typeof apiActivities>;

export interface EphemeralOptions {
  proxies: ApiActivities;
  timings: Timings;
  /** The run's tag in names (`runTag` or a legacy run key). */
  run: string;
  runId: string;
  dropletSize: string;
  dropletImage: string;
  /**
   * Creates are waited for when cancelled, and teardown waits for those in flight (the backup's
   * 'settle-creates-before-teardown' patch; always on for workflows newer than it).
   */
  settleCreates: boolean;
  /** What sweep and teardown deleted, as `describeRef` text (the run's progress shows it). */
  deleted: string[];
}

/** How the store worker reaches a volume attached to a run's droplet (part of the transfer's input; no secret). */
export interface SshTarget {
  host: string;
  port: number;
  username: string;
  keyRef: string;
  clientKeyFingerprint: string | undefined;
  stallTimeoutMs: number;
}

export interface ReadyDroplet {
  dropletId: string;
  ready: DropletReady;
}

/**
 * What one run creates to reach volumes, recorded in its ledger before each create so that teardown finds it by its
 * deterministic name even if a worker died before the create returned.
 */
export class EphemeralResources {
  readonly ledger = new Ledger();
  /** The registered client key's fingerprint: the store worker checks its own key_secret against it. */
  clientKeyFingerprint: string | undefined;
  // Teardown cancels it: nothing waits for a droplet any more, but its create is still settled.
  private readonly dropletScope = new CancellationScope();
  private readonly droplets = new Map<string, Promise<ReadyDroplet>>();

  constructor(private readonly o: EphemeralOptions) {}

  private get create() {
    return this.o.settleCreates ? this.o.proxies.creates : this.o.proxies.api;
  }

  /**
   * How the store worker reaches a volume attached to `droplet`: as root, with the keys it derives from the run id, the
   * registered client key's fingerprint to check its own key_secret against.
   */
  sshTarget(droplet: ReadyDroplet): SshTarget {
    return {
      host: droplet.ready.ip,
      port: droplet.ready.port,
      username: 'root',
      keyRef: this.o.runId,
      clientKeyFingerprint: this.clientKeyFingerprint,
      stallTimeoutMs: this.o.timings.transferStallTimeoutMs,
    };
  }

  /** Delete what earlier runs of this installation left behind (and others' after a week); recorded in `into`. */
  async sweepLeftovers(into: string[]): Promise<void> {
    const leftovers = await this.o.proxies.api.findLeftovers.executeWithOptions(
      { summary: 'find leftovers of earlier runs' },
      [{ exceptRun: this.o.run }],
    );
    await this.deleteInOrder(leftovers, into);
  }

  /** Register the run's SSH key (its private half is derived on the workers, never in the workflow). */
  async registerKey(): Promise<{ keyId: string; fingerprint: string }> {
    const { run, runId } = this.o;
    const keyRef = this.ledger.record({ kind: 'ssh_key', name: names.sshKey(run) }, 0);
    const key = await this.ledger.creating(
      this.create.registerSshKey.executeWithOptions({ summary: 'register the run SSH key' }, [{ run, runId }]),
    );
    this.ledger.created(keyRef, key.keyId);
    this.clientKeyFingerprint = key.fingerprint;
    return key;
  }

  /**
   * The run's droplet in `region`, created at the first ask and shared by every later one. A droplet that never comes
   * up fails only those who wait for it (callers that start it early and await it later must not see an unhandled
   * rejection meanwhile). `index` > 0: one more droplet in the region (a run spreads its volumes' attaches and
   * detaches over several, since a droplet takes one action at a time); named `…-<region>-<index + 1>`.
   */
  droplet(region: string, sshKeyId: string, index = 0): Promise<ReadyDroplet> {
    const key = index === 0 ? region : `${region}#${index}`;
    let p = this.droplets.get(key);
    if (!p) {
      p = this.dropletScope.run(() => this.prepareDroplet(region, sshKeyId, index));
      p.catch(() => undefined);
      this.droplets.set(key, p);
    }
    return p;
  }

  private async prepareDroplet(region: string, sshKeyId: string, index: number): Promise<ReadyDroplet> {
    const { run, runId, timings: t } = this.o;
    const name = names.droplet(run, region, index);
    const ref = this.ledger.record({ kind: 'droplet', name, region }, 0);
    const created = await this.ledger.creating(
      this.create.createDroplet.executeWithOptions(
        { summary: `create droplet in ${region}${index === 0 ? '' : ` (#${index + 1})`}` },
        [
          {
            run,
            runId,
            region,
            size: this.o.dropletSize,
            image: this.o.dropletImage,
            sshKeyId,
            ...(index === 0 ? {} : { index }),
          },
        ],
      ),
    );
    this.ledger.created(ref, created.dropletId, undefined, created.requestedAtMs);
    const ready = await this.o.proxies.droplet.waitForDroplet.executeWithOptions(
      { summary: `wait for droplet ${created.name}` },
      [{ runId, dropletId: created.dropletId, pollIntervalMs: t.pollIntervalMs }],
    );
    return { dropletId: created.dropletId, ready };
  }

  /** Deletes `refs` (deletion.ts); records what it deleted in `into`. */
  async deleteInOrder(refs: readonly ResourceRef[], into: string[]): Promise<DeletionOutcome> {
    return deleteInOrder(this.o.proxies.cleanup, refs, into);
  }

  /**
   * Detach every attachment still recorded and delete everything live in the ledger. Call it non-cancellable: a
   * cancelled run still deletes everything it created.
   */
  async teardown(): Promise<void> {
    const { ledger } = this;
    const { cleanup } = this.o.proxies;
    if (this.o.settleCreates) {
      this.dropletScope.cancel();
      await ledger.settled();
    }
    for (const a of ledger.attachments()) {
      try {
        await cleanup.detachVolume.executeWithOptions({ summary: `detach volume ${a.volumeId}` }, [
          { ...a, pollIntervalMs: this.o.timings.pollIntervalMs },
        ]);
        ledger.detached(a);
      } catch (err) {
        // Deleting the droplet detaches it too.
        log.warn('detach failed during cleanup', { error: reason(err) });
      }
    }
    const { gone, goneAt } = await this.deleteInOrder(ledger.live(), this.o.deleted);
    gone.forEach((ref, i) => ledger.deleted(ref, goneAt[i] ?? Date.now()));
  }
}
