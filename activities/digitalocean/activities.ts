// Activities that talk to the DigitalOcean API. Any worker may run them (the main task queue).
// Every one is safe to retry: creates look up the run's deterministic name first,
// deletes treat 404 as done, waits re-read the current state.
import { Context, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { minimatch } from 'minimatch';
import type { IDroplet } from 'dots-wrapper/dist/droplet';
import type { IVolume } from 'dots-wrapper/dist/volume';
import type { ISnapshot } from 'dots-wrapper/dist/snapshot';
import type { ISshKey } from 'dots-wrapper/dist/ssh-key';
import { EPHEMERAL_PREFIX, EPHEMERAL_TAG, installationTag, isEphemeralName, names } from '../../common/names';
import { deriveRunKey } from '../run-keys';
import { listAll, sentAtMs, type DoApi } from './api';
import { FailureTypes, call, callIgnoringNotFound, isNotFound, toFailure } from './errors';
import { cloudConfigWithHostKey } from './cloud-config';
import { waitForPinnedSsh } from './ssh-ready';
import {
  FOREIGN_LEFTOVER_AGE_MS,
  createdAtMs,
  isLeftover,
  keyRegisteredAtMs,
  withRegisteredComment,
  type Candidate,
  type SweepScope,
} from './leftovers';
import { heartbeat, heartbeating } from './heartbeat';

export interface DigitalOceanDeps {
  api: DoApi;
  /** Secret the per-run keys are derived from; shared by every worker of one installation. */
  keySecret: string;
  /** In the names (through the workflow's run tag) and tags of what runs create; whose leftovers a sweep deletes. */
  installationId: string;
  sshPort: number;
}

export interface SourceVolume {
  id: string;
  name: string;
  region: string;
  sizeGigabytes: number;
}

export interface ResourceRef {
  kind: 'droplet' | 'volume' | 'snapshot' | 'ssh_key';
  name: string;
  region?: string;
  id?: string;
}

/**
 * When a create's request went out, by the worker's clock: a resource is billed from then, and the workflow's own
 * clock would add the activity's scheduling and the name look-up before it. Absent when an earlier attempt made it.
 */
export interface RequestedAt {
  requestedAtMs?: number;
}

/** What a delete did, and when DigitalOcean answered it (the worker's clock): where the resource's billing ends. */
export interface Deletion {
  outcome: 'deleted' | 'absent';
  answeredAtMs: number;
}

export interface SnapshotInfo extends RequestedAt {
  snapshotId: string;
  createdAt: string;
  /** The volume size it restores to (`min_disk_size`): what a volume made from it has. */
  sizeGigabytes: number;
  /** What DigitalOcean bills it by (`size_gigabytes`, the data it holds); absent in results of older runs. */
  storedGigabytes?: number;
}

export interface DropletReady {
  ip: string;
  port: number;
  hostPublicKey: string;
}

function volumeRegion(v: IVolume): string {
  return v.region.slug;
}

async function listVolumes(api: DoApi, filter: { name?: string } = {}): Promise<IVolume[]> {
  return listAll(async (page, per_page) => {
    const { data } = await api.volume.listVolumes({ page, per_page, ...filter });
    return { items: data.volumes, total: data.meta?.total };
  });
}

async function listVolumeSnapshots(api: DoApi): Promise<ISnapshot[]> {
  return listAll(async (page, per_page) => {
    const { data } = await api.snapshot.listSnapshots({ page, per_page, resource_type: 'volume' });
    return { items: data.snapshots, total: data.meta?.total };
  });
}

async function listTaggedDroplets(api: DoApi): Promise<IDroplet[]> {
  return listAll(async (page, per_page) => {
    const { data } = await api.droplet.listDroplets({ page, per_page, tag_name: EPHEMERAL_TAG });
    return { items: data.droplets, total: data.meta?.total };
  });
}

async function listSshKeys(api: DoApi): Promise<ISshKey[]> {
  return listAll(async (page, per_page) => {
    const { data } = await api.sshKey.listSshKeys({ page, per_page });
    return { items: data.ssh_keys, total: data.meta?.total };
  });
}

function hasTag(resource: { tags?: readonly string[] | null }): boolean {
  return (resource.tags ?? []).includes(EPHEMERAL_TAG);
}

/**
 * One poll of a wait loop. A transient failure (5xx, 429, a timeout) is waited out inside the
 * attempt, so a long wait is not lost to one bad answer; the activity's timeout still bounds it.
 * Resolves undefined when the caller should poll again.
 */
async function pollOnce<T>(what: string, fn: () => Promise<T>, pollIntervalMs: number): Promise<T | undefined> {
  try {
    return await call(what, fn);
  } catch (err) {
    if (!(err instanceof ApplicationFailure) || err.nonRetryable) throw err;
    heartbeat({ transient: err.message });
    const wait = err.type === FailureTypes.rateLimited ? Math.max(pollIntervalMs, 1000) : pollIntervalMs;
    await sleep(wait);
    return undefined;
  }
}

/**
 * An action on a droplet that may be busy: DigitalOcean takes one action at a time per droplet and answers 422
 * "pending event" (or 409) meanwhile. That is waited out inside the attempt (heartbeating) instead of spending the
 * activity's retries, which several volumes attaching to one droplet at once would otherwise use up.
 */
async function whenDropletFree<T>(what: string, fn: () => Promise<T>, pollIntervalMs: number): Promise<T> {
  for (;;) {
    try {
      return await call(what, fn);
    } catch (err) {
      if (!(err instanceof ApplicationFailure) || err.nonRetryable || err.type !== FailureTypes.rejected) throw err;
      heartbeat({ waiting: err.message });
      await sleep(Math.max(pollIntervalMs, 250));
    }
  }
}

export function createDigitalOceanActivities(deps: DigitalOceanDeps) {
  const { api } = deps;
  const runTags = [EPHEMERAL_TAG, installationTag(deps.installationId)];

  async function findDroplet(name: string): Promise<IDroplet | undefined> {
    return (await listTaggedDroplets(api)).find((d) => d.name === name);
  }

  async function findVolume(name: string, region: string): Promise<IVolume | undefined> {
    return (await listVolumes(api, { name })).find((v) => v.name === name && volumeRegion(v) === region);
  }

  async function waitForAction(what: string, actionId: number, pollIntervalMs: number): Promise<void> {
    for (;;) {
      const answer = await pollOnce(what, () => api.action.getAction({ action_id: actionId }), pollIntervalMs);
      if (!answer) continue;
      const status = answer.data.action.status;
      if (status === 'completed') return;
      if (status === 'errored') {
        throw ApplicationFailure.retryable(
          `${what}: DigitalOcean action ${actionId} errored`,
          FailureTypes.actionErrored,
        );
      }
      heartbeat({ actionId, status });
      await sleep(pollIntervalMs);
    }
  }

  /** Delete by id, or by the deterministic name when the id was never learned; 404 is done. */
  async function deleteByKind(ref: ResourceRef): Promise<Deletion['outcome']> {
    const what = `deleting ${ref.kind.replace('_', ' ')} ${ref.name}`;
    switch (ref.kind) {
      case 'droplet': {
        const id = ref.id ?? (await call(what, () => findDroplet(ref.name)))?.id;
        if (id === undefined) return 'absent';
        return callIgnoringNotFound(what, () => api.droplet.deleteDroplet({ droplet_id: Number(id) }));
      }
      case 'volume': {
        // 409 while still attached (a droplet's deletion detaches it a moment later): retried.
        if (ref.id) return callIgnoringNotFound(what, () => api.volume.deleteVolume({ volume_id: ref.id ?? '' }));
        if (!ref.region) return 'absent';
        return callIgnoringNotFound(what, () =>
          api.volume.deleteVolumeByName({ volume_name: ref.name, region: ref.region ?? '' }),
        );
      }
      case 'snapshot': {
        const id = ref.id ?? (await call(what, () => listVolumeSnapshots(api))).find((s) => s.name === ref.name)?.id;
        if (id === undefined) return 'absent';
        return callIgnoringNotFound(what, () => api.snapshot.deleteSnapshot({ snapshot_id: String(id) }));
      }
      case 'ssh_key': {
        const id = ref.id ?? (await call(what, () => listSshKeys(api))).find((k) => k.name === ref.name)?.id;
        if (id === undefined) return 'absent';
        return callIgnoringNotFound(what, () => api.sshKey.destroySshKey({ ssh_key_id: String(id) }));
      }
    }
  }

  return heartbeating({
    /** GET /v2/account: fails at once, non-retryable, on a wrong token. */
    async checkAccess(): Promise<{ status: string; dropletLimit: number; volumeLimit: number | undefined }> {
      const { data } = await call('checking the DigitalOcean token', () => api.account.getAccount());
      return {
        status: data.account.status,
        dropletLimit: data.account.droplet_limit,
        volumeLimit: (data.account as { volume_limit?: number }).volume_limit,
      };
    },

    /** The volumes to back up: in the given regions, matching include and not exclude, never dosvob's own. */
    async listSourceVolumes(input: {
      regions: readonly string[];
      include: readonly string[];
      exclude: readonly string[];
    }): Promise<SourceVolume[]> {
      const regions = await call('listing regions', () =>
        listAll(async (page, per_page) => {
          const { data } = await api.region.listRegions({ page, per_page });
          return { items: data.regions, total: data.meta?.total };
        }),
      );
      const known = new Set(regions.map((r) => r.slug));
      const unknown = input.regions.filter((r) => !known.has(r));
      if (unknown.length > 0) {
        throw ApplicationFailure.nonRetryable(
          `unknown region ${unknown.map((r) => `"${r}"`).join(', ')}: DigitalOcean's regions are ${[...known].sort().join(', ')}`,
          FailureTypes.config,
        );
      }
      const volumes = await call('listing volumes', () => listVolumes(api));
      return volumes
        .filter((v) => input.regions.includes(volumeRegion(v)))
        .filter((v) => !isEphemeralName(v.name) || !hasTag(v))
        .filter((v) => input.include.some((g) => minimatch(v.name, g)))
        .filter((v) => !input.exclude.some((g) => minimatch(v.name, g)))
        .map((v) => ({ id: v.id, name: v.name, region: volumeRegion(v), sizeGigabytes: v.size_gigabytes }))
        .sort((a, b) => a.region.localeCompare(b.region) || a.name.localeCompare(b.name));
    },

    /**
     * Leftovers of earlier runs: resources with BOTH the ephemeral tag and name prefix (SSH keys have no tags: the name
     * prefix alone), of this installation (`exceptRun` protects the current run), or of another installation (or from
     * before installation ids) only when older than `foreignAfterMs` (leftovers.ts).
     */
    async findLeftovers(input: { exceptRun?: string; foreignAfterMs?: number }): Promise<ResourceRef[]> {
      const scope: SweepScope = {
        installationId: deps.installationId,
        exceptRun: input.exceptRun,
        foreignAfterMs: input.foreignAfterMs ?? FOREIGN_LEFTOVER_AGE_MS,
        nowMs: Date.now(),
      };
      const tagged = (r: { name: string; tags?: readonly string[] | null; created_at?: string }): boolean =>
        hasTag(r) && isLeftover({ name: r.name, tags: r.tags ?? [], createdAtMs: createdAtMs(r.created_at) }, scope);
      const [droplets, volumes, snapshots, keys] = await call('listing leftovers', () =>
        Promise.all([listTaggedDroplets(api), listVolumes(api), listVolumeSnapshots(api), listSshKeys(api)]),
      );
      const key = (k: ISshKey): Candidate => ({
        name: k.name,
        tags: undefined,
        createdAtMs: keyRegisteredAtMs(k.public_key),
      });
      return [
        ...droplets.filter(tagged).map((d): ResourceRef => ({
          kind: 'droplet',
          name: d.name,
          region: typeof d.region === 'string' ? d.region : d.region.slug,
          id: String(d.id),
        })),
        ...volumes
          .filter(tagged)
          .map((v): ResourceRef => ({ kind: 'volume', name: v.name, region: volumeRegion(v), id: v.id })),
        ...snapshots.filter(tagged).map((s): ResourceRef => ({ kind: 'snapshot', name: s.name, id: String(s.id) })),
        ...keys
          .filter((k) => isLeftover(key(k), scope))
          .map((k): ResourceRef => ({ kind: 'ssh_key', name: k.name, id: String(k.id) })),
      ];
    },

    /**
     * How many more droplets the account may have: its `droplet_limit` less the droplets it has, not counting this
     * run's own (which may already be booting). A run asks before it spreads its volumes over more droplets.
     */
    async dropletHeadroom(input: { run: string }): Promise<number> {
      const ours = `${EPHEMERAL_PREFIX}-${input.run}-`;
      const [{ data }, droplets] = await call("counting the account's droplets", () =>
        Promise.all([
          api.account.getAccount(),
          listAll(async (page, per_page) => {
            const { data } = await api.droplet.listDroplets({ page, per_page });
            return { items: data.droplets, total: data.meta?.total };
          }),
        ]),
      );
      return data.account.droplet_limit - droplets.filter((d) => !d.name.startsWith(ours)).length;
    },

    /** Register the run's public client key on the account (its private half is derived, never stored). */
    async registerSshKey(input: { run: string; runId: string }): Promise<{ keyId: string; fingerprint: string }> {
      const key = deriveRunKey(deps.keySecret, input.runId, 'client');
      const name = names.sshKey(input.run);
      const existing = await call('looking up the run SSH key', async () => {
        try {
          return (await api.sshKey.getSshKey({ ssh_key_id: key.fingerprint })).data.ssh_key;
        } catch (err) {
          if (isNotFound(err)) return undefined;
          throw err;
        }
      });
      if (existing) return { keyId: String(existing.id), fingerprint: existing.fingerprint };
      const { data } = await call('registering the run SSH key', () =>
        api.sshKey.createSshKey({
          name,
          // Keys have no tags and no creation time: the comment says whose it is and since when, for sweeps.
          public_key: withRegisteredComment(key.publicKey, deps.installationId, Date.now()),
        }),
      );
      return { keyId: String(data.ssh_key.id), fingerprint: data.ssh_key.fingerprint };
    },

    /** The run's droplet in one region, with the pinned host key in its cloud-config. */
    async createDroplet(input: {
      run: string;
      runId: string;
      region: string;
      size: string;
      image: string;
      sshKeyId: string;
      /** A region's further droplets (1, 2, …): `…-<region>-<index + 1>`. */
      index?: number;
    }): Promise<{ dropletId: string; name: string } & RequestedAt> {
      const name = names.droplet(input.run, input.region, input.index);
      const existing = await call('looking up the run droplet', () => findDroplet(name));
      if (existing) return { dropletId: String(existing.id), name };
      const hostKey = deriveRunKey(deps.keySecret, input.runId, 'host');
      const created = await call(`creating droplet ${name}`, () =>
        api.droplet.createDroplet({
          name,
          region: input.region,
          size: input.size,
          image: input.image,
          ssh_keys: [input.sshKeyId],
          tags: runTags,
          user_data: cloudConfigWithHostKey(hostKey),
          monitoring: false,
          ipv6: false,
        }),
      );
      return { dropletId: String(created.data.droplet.id), name, requestedAtMs: sentAtMs(created) };
    },

    /** Wait until the droplet is active and answers SSH with exactly the run's host key. */
    async waitForDroplet(input: { runId: string; dropletId: string; pollIntervalMs: number }): Promise<DropletReady> {
      const hostKey = deriveRunKey(deps.keySecret, input.runId, 'host');
      const clientKey = deriveRunKey(deps.keySecret, input.runId, 'client');
      let ip: string | undefined;
      while (!ip) {
        const answer = await pollOnce(
          'waiting for the droplet',
          () => api.droplet.getDroplet({ droplet_id: Number(input.dropletId) }),
          input.pollIntervalMs,
        );
        if (!answer) continue;
        const droplet = answer.data.droplet;
        if (droplet.status === 'active') ip = droplet.networks.v4.find((n) => n.type === 'public')?.ip_address;
        if (!ip) {
          heartbeat({ status: droplet.status });
          await sleep(input.pollIntervalMs);
        }
      }
      await waitForPinnedSsh({
        host: ip,
        port: deps.sshPort,
        hostPublicKey: hostKey.publicKey,
        privateKey: clientKey.privateKey,
        pollIntervalMs: input.pollIntervalMs,
        onAttempt: (attempt) => heartbeat({ status: 'ssh', attempt }),
        signal: Context.current().cancellationSignal,
      });
      return { ip, port: deps.sshPort, hostPublicKey: hostKey.publicKey };
    },

    /** Snapshot a source volume, or find the snapshot this run already made (one per 10 minutes is the limit). */
    async snapshotVolume(input: { run: string; volumeId: string; volumeName: string }): Promise<SnapshotInfo> {
      const name = names.snapshot(input.run, input.volumeName);
      const what = `snapshotting ${input.volumeName}`;
      const existing = await call(what, async () => {
        const snaps = await listAll(async (page, per_page) => {
          const { data } = await api.volume.listVolumeSnapshots({ volume_id: input.volumeId, page, per_page });
          return { items: data.snapshots, total: data.meta?.total };
        });
        return snaps.find((s) => s.name === name);
      }).catch((err: unknown) => {
        if (err instanceof ApplicationFailure && err.type === FailureTypes.notFound) {
          throw ApplicationFailure.nonRetryable(`${input.volumeName} no longer exists`, FailureTypes.sourceGone);
        }
        throw err;
      });
      const created = existing
        ? undefined
        : await call(what, () => api.volume.createVolumeSnapshot({ volume_id: input.volumeId, name, tags: runTags }));
      const snap = existing ?? (created?.data.snapshot as ISnapshot);
      const requestedAtMs = created && sentAtMs(created);
      return {
        ...(requestedAtMs === undefined ? {} : { requestedAtMs }),
        snapshotId: String(snap.id),
        createdAt: snap.created_at,
        sizeGigabytes: snap.min_disk_size,
        storedGigabytes: snap.size_gigabytes,
      };
    },

    /** A volume made from the snapshot: it is what gets attached and read, never the source. */
    async createVolumeFromSnapshot(input: {
      run: string;
      volumeName: string;
      region: string;
      snapshotId: string;
      sizeGigabytes: number;
    }): Promise<{ volumeId: string; name: string } & RequestedAt> {
      const name = names.copyVolume(input.run, input.volumeName);
      const existing = await call('looking up the copy volume', () => findVolume(name, input.region));
      if (existing) return { volumeId: existing.id, name };
      // No filesystem_type: nothing on the droplet may mount or touch the copy.
      const created = await call(`creating volume ${name}`, () =>
        api.volume.createVolume({
          name,
          region: input.region,
          snapshot_id: input.snapshotId,
          size_gigabytes: input.sizeGigabytes,
          tags: runTags,
          description: `dosvob: temporary copy of ${input.volumeName}`,
        }),
      );
      return { volumeId: created.data.volume.id, name, requestedAtMs: sentAtMs(created) };
    },

    async attachVolume(input: {
      volumeId: string;
      dropletId: string;
      region: string;
      pollIntervalMs: number;
    }): Promise<void> {
      const what = 'attaching the copy volume';
      const { data } = await call(what, () => api.volume.getVolume({ volume_id: input.volumeId }));
      if (data.volume.droplet_ids.map(String).includes(input.dropletId)) return;
      const res = await whenDropletFree(
        what,
        () =>
          api.volume.attachVolumeToDroplet({
            volume_id: input.volumeId,
            droplet_id: Number(input.dropletId),
            region: input.region,
          }),
        input.pollIntervalMs,
      );
      await waitForAction(what, res.data.action.id, input.pollIntervalMs);
    },

    async detachVolume(input: { volumeId: string; dropletId: string; region: string; pollIntervalMs: number }) {
      const what = 'detaching the copy volume';
      let attached: boolean;
      try {
        const { data } = await api.volume.getVolume({ volume_id: input.volumeId });
        attached = data.volume.droplet_ids.map(String).includes(input.dropletId);
      } catch (err) {
        if (isNotFound(err)) return;
        throw toFailure(err, what);
      }
      if (!attached) return;
      const actionId = await whenDropletFree(
        what,
        async () => {
          try {
            const res = await api.volume.detachVolumeFromDroplet({
              volume_id: input.volumeId,
              droplet_id: Number(input.dropletId),
              region: input.region,
            });
            return res.data.action.id;
          } catch (err) {
            if (isNotFound(err)) return undefined;
            throw err;
          }
        },
        input.pollIntervalMs,
      );
      if (actionId === undefined) return;
      await waitForAction(what, actionId, input.pollIntervalMs);
    },

    /** Delete a resource of this run by id, or by its deterministic name when the id was never learned. */
    async deleteResource(ref: ResourceRef): Promise<Deletion> {
      const outcome = await deleteByKind(ref);
      return { outcome, answeredAtMs: Date.now() };
    },
  });
}

export type DigitalOceanActivities = ReturnType<typeof createDigitalOceanActivities>;
