// The user's side of a restore on DigitalOcean: the new volume a version is written onto, and the droplet it may be
// attached to at the end. Unlike everything else dosvob creates, the target is the user's to keep: it carries neither
// the ephemeral tag nor the name prefix, so no sweep can ever delete it. What marks it as this run's while the restore
// is under way is its description (`restore run <run id>`): creates and deletes look it up by name and act only on a
// volume that says so. A restore never touches a volume that is not its own.
import { ApplicationFailure } from '@temporalio/common';
import type { IVolume } from 'dots-wrapper/dist/volume';
import type { IDroplet } from 'dots-wrapper/dist/droplet';
import { EPHEMERAL_TAG, MAX_VOLUME_NAME } from '../../common/names';
import { listAll, type DoApi } from './api';
import { FailureTypes, call, callIgnoringNotFound, isNotFound } from './errors';
import { heartbeating } from './heartbeat';

/** The one tag a restored volume gets: so a user can find what dosvob restored. Never the ephemeral tag. */
export const RESTORED_TAG = 'dosvob-restored';

export const RestoreFailureTypes = {
  nameInUse: 'VolumeNameInUse',
  badName: 'BadVolumeName',
  dropletNotFound: 'DropletNotFound',
} as const;

const VOLUME_NAME = /^[a-z][a-z0-9-]*$/;

export interface RestoreTarget {
  name: string;
  region: string;
  /** The restore run's id: the target's description names it, which is how a retry or a cleanup knows it is ours. */
  runId: string;
}

export interface AttachTarget {
  dropletId: string;
  name: string;
}

function marker(runId: string): string {
  return `restore run ${runId}`;
}

function isOurs(v: IVolume, runId: string): boolean {
  return (v.description ?? '').includes(marker(runId));
}

function nameInUse(v: IVolume): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `a volume named "${v.name}" already exists in ${v.region.slug} (id ${v.id}): a restore never touches an existing ` +
      'volume; choose another --to-volume name, or delete that volume first',
    RestoreFailureTypes.nameInUse,
  );
}

export function checkVolumeName(name: string): void {
  if (name.length > MAX_VOLUME_NAME || !VOLUME_NAME.test(name)) {
    throw ApplicationFailure.nonRetryable(
      `--to-volume "${name}": a DigitalOcean volume name is lowercase letters, digits and "-", starts with a letter, ` +
        `at most ${MAX_VOLUME_NAME} characters`,
      RestoreFailureTypes.badName,
    );
  }
}

export function createRestoreTargetActivities(deps: { api: DoApi }) {
  const { api } = deps;

  async function findByName(name: string, region: string): Promise<IVolume | undefined> {
    const volumes = await listAll(async (page, per_page) => {
      const { data } = await api.volume.listVolumes({ page, per_page, name });
      return { items: data.volumes, total: data.meta?.total };
    });
    return volumes.find((v) => v.name === name && v.region.slug === region);
  }

  async function findDroplet(nameOrId: string): Promise<IDroplet | undefined> {
    if (/^\d+$/.test(nameOrId)) {
      try {
        return (await api.droplet.getDroplet({ droplet_id: Number(nameOrId) })).data.droplet;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    // The droplet list has no name filter.
    const droplets = await listAll(async (page, per_page) => {
      const { data } = await api.droplet.listDroplets({ page, per_page });
      return { items: data.droplets, total: data.meta?.total };
    });
    return droplets.find((d) => d.name === nameOrId);
  }

  return heartbeating({
    /**
     * Before anything is created: the name is valid and free in the region (or already this run's), and the droplet
     * to attach to at the end exists there. Every refusal is non-retryable and says what to change.
     */
    async checkRestoreTarget(input: RestoreTarget & { attachTo?: string }): Promise<{ attachTo?: AttachTarget }> {
      checkVolumeName(input.name);
      const regions = await call('listing regions', () =>
        listAll(async (page, per_page) => {
          const { data } = await api.region.listRegions({ page, per_page });
          return { items: data.regions, total: data.meta?.total };
        }),
      );
      if (!regions.some((r) => r.slug === input.region)) {
        throw ApplicationFailure.nonRetryable(
          `unknown region "${input.region}": DigitalOcean's regions are ${regions
            .map((r) => r.slug)
            .sort()
            .join(', ')}`,
          FailureTypes.config,
        );
      }
      const existing = await call('looking up the target volume name', () => findByName(input.name, input.region));
      if (existing && !isOurs(existing, input.runId)) throw nameInUse(existing);
      if (input.attachTo === undefined) return {};
      const droplet = await call(`looking up droplet ${input.attachTo}`, () => findDroplet(input.attachTo ?? ''));
      if (!droplet) {
        throw ApplicationFailure.nonRetryable(
          `--attach-to ${input.attachTo}: no droplet with that name or id on this account`,
          RestoreFailureTypes.dropletNotFound,
        );
      }
      const region = typeof droplet.region === 'string' ? droplet.region : droplet.region.slug;
      if (region !== input.region) {
        throw ApplicationFailure.nonRetryable(
          `--attach-to ${input.attachTo}: the droplet is in ${region}, the restored volume will be in ${input.region}: ` +
            `a volume attaches only to a droplet in its own region (restore with --region ${region})`,
          FailureTypes.config,
        );
      }
      if ((droplet.tags ?? []).includes(EPHEMERAL_TAG)) {
        throw ApplicationFailure.nonRetryable(
          `--attach-to ${input.attachTo}: that is one of dosvob's ephemeral droplets, deleted at the end of its run`,
          FailureTypes.config,
        );
      }
      return { attachTo: { dropletId: String(droplet.id), name: droplet.name } };
    },

    /** The new, empty volume (reads as zeros; no filesystem_type, so nothing formats or mounts it). */
    async createRestoreTarget(
      input: RestoreTarget & { sizeGigabytes: number; description: string },
    ): Promise<{ volumeId: string; name: string }> {
      const what = `creating volume ${input.name}`;
      const existing = await call('looking up the target volume', () => findByName(input.name, input.region));
      if (existing) {
        if (!isOurs(existing, input.runId)) throw nameInUse(existing);
        return { volumeId: existing.id, name: existing.name };
      }
      try {
        const { data } = await call(what, () =>
          api.volume.createVolume({
            name: input.name,
            region: input.region,
            size_gigabytes: input.sizeGigabytes,
            tags: [RESTORED_TAG],
            description: `${input.description} (${marker(input.runId)})`,
          }),
        );
        return { volumeId: data.volume.id, name: data.volume.name };
      } catch (err) {
        // 409: someone took the name since the check (or an earlier attempt's create landed): whose is it?
        const now = await call('looking up the target volume', () => findByName(input.name, input.region));
        if (now && isOurs(now, input.runId)) return { volumeId: now.id, name: now.name };
        if (now) throw nameInUse(now);
        throw err;
      }
    },

    /**
     * Delete a target that was not finished (failed, cancelled, not verified), by id or by name, and only when its
     * description says it is this run's: a name someone else holds is never deleted. 404 is done; 409 while still
     * attached is retried.
     */
    async deleteRestoreTarget(input: RestoreTarget & { id?: string }): Promise<'deleted' | 'absent'> {
      const what = `deleting the unfinished volume ${input.name}`;
      let volume: IVolume | undefined;
      if (input.id) {
        const id = input.id;
        volume = await call(what, async () => {
          try {
            return (await api.volume.getVolume({ volume_id: id })).data.volume;
          } catch (err) {
            if (isNotFound(err)) return undefined;
            throw err;
          }
        });
      } else {
        volume = await call(what, () => findByName(input.name, input.region));
      }
      if (!volume || !isOurs(volume, input.runId)) return 'absent';
      const id = volume.id;
      return callIgnoringNotFound(what, () => api.volume.deleteVolume({ volume_id: id }));
    },
  });
}

export type RestoreTargetActivities = ReturnType<typeof createRestoreTargetActivities>;
