// Records -> the API's JSON shapes.
import { findRegion, findSize, renderImage, renderRegion, renderSize } from './catalog';
import type { ActionRec, DropletRec, SnapshotRec, SshKeyRec, VolumeRec } from './state';

export type Json = Record<string, unknown>;

export const API_ORIGIN = 'https://api.digitalocean.com';

/** "2020-03-02T17:00:49Z": the API's timestamps have no milliseconds. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function region(slug: string): Json {
  const r = findRegion(slug);
  if (!r) throw new Error(`unknown region ${slug}`);
  return renderRegion(r);
}

export function renderVolume(v: VolumeRec): Json {
  return {
    id: v.id,
    region: region(v.region),
    droplet_ids: [...v.dropletIds],
    name: v.name,
    description: v.description,
    size_gigabytes: v.sizeGigabytes,
    created_at: isoTime(v.createdAt),
    filesystem_type: v.filesystemType,
    filesystem_label: v.filesystemLabel,
    tags: [...v.tags],
  };
}

export function renderSnapshot(s: SnapshotRec): Json {
  return {
    id: s.id,
    name: s.name,
    regions: [s.region],
    created_at: isoTime(s.createdAt),
    resource_id: s.volumeId,
    resource_type: 'volume',
    min_disk_size: s.minDiskSize,
    size_gigabytes: s.sizeGigabytes,
    tags: [...s.tags],
  };
}

export function renderAction(a: ActionRec): Json {
  return {
    id: a.id,
    status: a.status,
    type: a.type,
    started_at: isoTime(a.startedAt),
    completed_at: a.completedAt === undefined ? null : isoTime(a.completedAt),
    resource_id: a.resourceId,
    resource_type: a.resourceType,
    region: region(a.region),
    region_slug: a.region,
  };
}

export function renderSshKey(k: SshKeyRec): Json {
  return { id: k.id, fingerprint: k.fingerprint, public_key: k.publicKey, name: k.name };
}

export function renderDroplet(d: DropletRec): Json {
  const size = findSize(d.size);
  if (!size) throw new Error(`unknown size ${d.size}`);
  const v4: Json[] = [];
  if (d.status === 'active' && d.ip && d.privateIp) {
    // Private first, as the real API often lists it: clients must pick `type: "public"`.
    v4.push({ ip_address: d.privateIp, netmask: '255.255.240.0', gateway: '10.10.0.1', type: 'private' });
    v4.push({ ip_address: d.ip, netmask: '255.255.240.0', gateway: d.ip.replace(/\.\d+$/, '.254'), type: 'public' });
  }
  return {
    id: d.id,
    name: d.name,
    memory: size.memory,
    vcpus: size.vcpus,
    disk: size.disk,
    disk_info: [{ type: 'local', size: { amount: size.disk, unit: 'gib' } }],
    locked: false,
    status: d.status,
    kernel: null,
    created_at: isoTime(d.createdAt),
    features: ['droplet_agent', 'private_networking'],
    backup_ids: [],
    next_backup_window: null,
    snapshot_ids: [],
    image: renderImage(d.image),
    volume_ids: [...d.volumeIds],
    size: renderSize(size),
    size_slug: size.slug,
    networks: { v4, v6: [] },
    region: region(d.region),
    tags: [...d.tags],
    vpc_uuid: '5a4981aa-9653-4bd1-bef5-d6bff52042e4',
  };
}

export function actionHref(id: number): string {
  return `${API_ORIGIN}/v2/actions/${id}`;
}
