// The API's endpoints: path templates (the OpenAPI spec's) -> handlers over the Cloud.
import { REGIONS, SIZES, renderRegion, renderSize } from './catalog';
import type { Cloud } from './cloud';
import { badRequest, notFound, unprocessable } from './errors';
import {
  API_ORIGIN,
  actionHref,
  renderAction,
  renderDroplet,
  renderSnapshot,
  renderSshKey,
  renderVolume,
  type Json,
} from './render';
import type { ActionRec, DropletRec, SnapshotRec, VolumeRec } from './state';

export interface RouteRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  path: string;
}

export interface RouteResult {
  status: number;
  body?: Json;
}

export interface Route {
  method: string;
  template: string;
  segments: string[];
  handler: (req: RouteRequest) => Promise<RouteResult> | RouteResult;
}

export interface RouteMatch {
  route: Route;
  params: Record<string, string>;
}

function positiveInt(value: string | null, fallback: number): number {
  if (value === null || !/^\d+$/.test(value)) return fallback;
  const n = Number(value);
  return n >= 1 ? n : fallback;
}

/** `page`/`per_page` pagination with `meta.total` and ABSOLUTE production `links.pages` URLs, like DigitalOcean. */
export function paginate<T>(items: readonly T[], req: RouteRequest): { items: T[]; links: Json; meta: Json } {
  const perPage = Math.min(200, positiveInt(req.query.get('per_page'), 20));
  const page = positiveInt(req.query.get('page'), 1);
  const total = items.length;
  const last = Math.max(1, Math.ceil(total / perPage));
  const url = (p: number): string => {
    const q = new URLSearchParams();
    q.set('page', String(p));
    for (const [k, v] of req.query) if (k !== 'page') q.append(k, v);
    return `${API_ORIGIN}${req.path}?${q.toString()}`;
  };
  const pages: Json = {};
  if (page > 1) {
    pages['first'] = url(1);
    pages['prev'] = url(Math.min(page - 1, last));
  }
  if (page < last) {
    pages['last'] = url(last);
    pages['next'] = url(page + 1);
  }
  return {
    items: items.slice((page - 1) * perPage, page * perPage),
    links: Object.keys(pages).length > 0 ? { pages } : {},
    meta: { total },
  };
}

function list<T>(key: string, items: readonly T[], render: (t: T) => Json, req: RouteRequest): RouteResult {
  const p = paginate(items, req);
  return { status: 200, body: { [key]: p.items.map(render), links: p.links, meta: p.meta } };
}

function bodyObject(req: RouteRequest): Json {
  const b = req.body;
  if (b === undefined) return {};
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw badRequest('the request body must be a JSON object');
  return b as Json;
}

function byCreation<T extends { createdAt: number }>(items: T[]): T[] {
  return [...items].sort((a, b) => a.createdAt - b.createdAt);
}

export function buildRoutes(cloud: Cloud): Route[] {
  const { state } = cloud;
  const routes: Route[] = [];
  const add = (method: string, template: string, handler: Route['handler']): void => {
    routes.push({ method, template, segments: template.split('/').filter(Boolean), handler });
  };

  const volume = (id: string | undefined): VolumeRec => {
    const v = id === undefined ? undefined : state.volume(id);
    if (!v) throw notFound();
    return v;
  };
  const snapshot = (id: string | undefined): SnapshotRec => {
    const s = id === undefined ? undefined : state.snapshot(id);
    if (!s) throw notFound();
    return s;
  };
  const droplet = (id: string | undefined): DropletRec => {
    const d = id !== undefined && /^\d+$/.test(id) ? state.droplet(Number(id)) : undefined;
    if (!d) throw notFound();
    return d;
  };
  const action = (id: string | undefined, belongs: (a: ActionRec) => boolean = () => true): ActionRec => {
    const a = id !== undefined && /^\d+$/.test(id) ? state.actions.get(Number(id)) : undefined;
    if (!a || !belongs(a)) throw notFound();
    return a;
  };
  const actionsNewestFirst = (filter: (a: ActionRec) => boolean): ActionRec[] =>
    [...state.actions.values()].filter(filter).sort((a, b) => b.id - a.id);

  // ---- account, catalog ----
  add('GET', '/v2/account', () => ({
    status: 200,
    body: {
      account: {
        droplet_limit: cloud.options.dropletLimit,
        floating_ip_limit: 3,
        email: 'simulator@example.com',
        name: 'dosvob simulator',
        uuid: 'b6fc48a1-d1fd-45a1-a1c4-3c2a4b9c1c6a',
        email_verified: true,
        status: 'active',
        status_message: '',
        team: { uuid: '5df3e3004a17e242b7c20ca6c9fc25b701a47ece', name: 'simulator team' },
      },
    },
  }));
  add('GET', '/v2/regions', (req) => list('regions', REGIONS, renderRegion, req));
  add('GET', '/v2/sizes', (req) => list('sizes', SIZES, renderSize, req));

  // ---- volumes ----
  add('GET', '/v2/volumes', (req) => {
    const region = req.query.get('region');
    const name = req.query.get('name');
    const items = byCreation(state.liveVolumes()).filter(
      (v) => (region === null || v.region === region) && (name === null || v.name === name),
    );
    return list('volumes', items, renderVolume, req);
  });
  add('POST', '/v2/volumes', async (req) => {
    const b = bodyObject(req);
    const v = await cloud.createVolume(
      {
        name: b['name'],
        region: b['region'],
        sizeGigabytes: b['size_gigabytes'],
        snapshotId: b['snapshot_id'],
        description: b['description'],
        tags: b['tags'],
        filesystemType: b['filesystem_type'],
        filesystemLabel: b['filesystem_label'],
      },
      true,
    );
    return { status: 201, body: { volume: renderVolume(v) } };
  });
  add('DELETE', '/v2/volumes', async (req) => {
    const name = req.query.get('name');
    const region = req.query.get('region');
    if (!name || !region) throw unprocessable('name and region are required');
    const v = cloud.volumeByNameRegion(name, region);
    if (!v) throw notFound();
    await cloud.deleteVolume(v);
    return { status: 204 };
  });
  add('GET', '/v2/volumes/{volume_id}', (req) => ({
    status: 200,
    body: { volume: renderVolume(volume(req.params['volume_id'])) },
  }));
  add('DELETE', '/v2/volumes/{volume_id}', async (req) => {
    await cloud.deleteVolume(volume(req.params['volume_id']));
    return { status: 204 };
  });

  // ---- volume snapshots ----
  add('POST', '/v2/volumes/{volume_id}/snapshots', async (req) => {
    const v = volume(req.params['volume_id']);
    const b = bodyObject(req);
    const s = await cloud.createSnapshot(v, b['name'], b['tags']);
    return { status: 201, body: { snapshot: renderSnapshot(s) } };
  });
  add('GET', '/v2/volumes/{volume_id}/snapshots', (req) => {
    const v = volume(req.params['volume_id']);
    const items = byCreation(state.liveSnapshots().filter((s) => s.volumeId === v.id));
    return list('snapshots', items, renderSnapshot, req);
  });
  add('GET', '/v2/volumes/snapshots/{snapshot_id}', (req) => ({
    status: 200,
    body: { snapshot: renderSnapshot(snapshot(req.params['snapshot_id'])) },
  }));
  add('DELETE', '/v2/volumes/snapshots/{snapshot_id}', async (req) => {
    await cloud.deleteSnapshot(snapshot(req.params['snapshot_id']));
    return { status: 204 };
  });
  add('GET', '/v2/snapshots', (req) => {
    const type = req.query.get('resource_type');
    const items = type === null || type === 'volume' ? byCreation(state.liveSnapshots()) : [];
    return list('snapshots', items, renderSnapshot, req);
  });
  add('GET', '/v2/snapshots/{snapshot_id}', (req) => ({
    status: 200,
    body: { snapshot: renderSnapshot(snapshot(req.params['snapshot_id'])) },
  }));
  add('DELETE', '/v2/snapshots/{snapshot_id}', async (req) => {
    await cloud.deleteSnapshot(snapshot(req.params['snapshot_id']));
    return { status: 204 };
  });

  // ---- volume actions, actions ----
  add('POST', '/v2/volumes/{volume_id}/actions', (req) => {
    const v = volume(req.params['volume_id']);
    const b = bodyObject(req);
    const a = cloud.volumeAction(v, b['type'], b['droplet_id'], b['region']);
    return { status: 202, body: { action: renderAction(a) } };
  });
  add('POST', '/v2/volumes/actions', (req) => {
    const b = bodyObject(req);
    const name = b['volume_name'];
    const region = b['region'];
    if (typeof name !== 'string' || typeof region !== 'string') {
      throw unprocessable('volume_name and region are required');
    }
    const v = cloud.volumeByNameRegion(name, region);
    if (!v) throw notFound();
    const a = cloud.volumeAction(v, b['type'], b['droplet_id'], region);
    return { status: 202, body: { action: renderAction(a) } };
  });
  add('GET', '/v2/volumes/{volume_id}/actions', (req) => {
    const v = volume(req.params['volume_id']);
    return list(
      'actions',
      actionsNewestFirst((a) => a.volumeId === v.id),
      renderAction,
      req,
    );
  });
  add('GET', '/v2/volumes/{volume_id}/actions/{action_id}', (req) => {
    const v = volume(req.params['volume_id']);
    const a = action(req.params['action_id'], (x) => x.volumeId === v.id);
    return { status: 200, body: { action: renderAction(a) } };
  });
  add('GET', '/v2/actions', (req) =>
    list(
      'actions',
      actionsNewestFirst(() => true),
      renderAction,
      req,
    ),
  );
  add('GET', '/v2/actions/{action_id}', (req) => ({
    status: 200,
    body: { action: renderAction(action(req.params['action_id'])) },
  }));

  // ---- droplets ----
  add('POST', '/v2/droplets', (req) => {
    const b = bodyObject(req);
    if (b['names'] !== undefined)
      throw unprocessable('creating several droplets at once is not supported by the simulator');
    const d = cloud.createDroplet({
      name: b['name'],
      region: b['region'],
      size: b['size'],
      image: b['image'],
      sshKeys: b['ssh_keys'],
      userData: b['user_data'],
      tags: b['tags'],
      volumes: b['volumes'],
    });
    return {
      status: 202,
      body: {
        droplet: renderDroplet(d),
        links: { actions: [{ id: d.createActionId, rel: 'create', href: actionHref(d.createActionId) }] },
      },
    };
  });
  add('GET', '/v2/droplets', (req) => {
    const tag = req.query.get('tag_name');
    const name = req.query.get('name');
    const items = byCreation(state.liveDroplets()).filter(
      (d) => (tag === null || d.tags.includes(tag)) && (name === null || d.name === name),
    );
    return list('droplets', items, renderDroplet, req);
  });
  add('DELETE', '/v2/droplets', async (req) => {
    const tag = req.query.get('tag_name');
    if (!tag) throw unprocessable('tag_name is required');
    for (const d of state.liveDroplets().filter((x) => x.tags.includes(tag))) await cloud.deleteDroplet(d);
    return { status: 204 };
  });
  add('GET', '/v2/droplets/{droplet_id}', (req) => ({
    status: 200,
    body: { droplet: renderDroplet(droplet(req.params['droplet_id'])) },
  }));
  add('DELETE', '/v2/droplets/{droplet_id}', async (req) => {
    await cloud.deleteDroplet(droplet(req.params['droplet_id']));
    return { status: 204 };
  });
  add('GET', '/v2/droplets/{droplet_id}/actions', (req) => {
    const d = droplet(req.params['droplet_id']);
    return list(
      'actions',
      actionsNewestFirst((a) => a.dropletId === d.id),
      renderAction,
      req,
    );
  });
  add('GET', '/v2/droplets/{droplet_id}/actions/{action_id}', (req) => {
    const d = droplet(req.params['droplet_id']);
    const a = action(req.params['action_id'], (x) => x.dropletId === d.id);
    return { status: 200, body: { action: renderAction(a) } };
  });

  // ---- SSH keys ----
  const key = (ref: string | undefined) => {
    const k = ref === undefined ? undefined : cloud.findKey(ref);
    if (!k) throw notFound();
    return k;
  };
  add('GET', '/v2/account/keys', (req) =>
    list(
      'ssh_keys',
      [...state.sshKeys.values()].sort((a, b) => a.id - b.id),
      renderSshKey,
      req,
    ),
  );
  add('POST', '/v2/account/keys', (req) => {
    const b = bodyObject(req);
    const k = cloud.addKey(b['name'], b['public_key'], true);
    return { status: 201, body: { ssh_key: renderSshKey(k) } };
  });
  add('GET', '/v2/account/keys/{ssh_key_identifier}', (req) => ({
    status: 200,
    body: { ssh_key: renderSshKey(key(req.params['ssh_key_identifier'])) },
  }));
  add('PUT', '/v2/account/keys/{ssh_key_identifier}', (req) => {
    const k = key(req.params['ssh_key_identifier']);
    cloud.renameKey(k, bodyObject(req)['name']);
    return { status: 200, body: { ssh_key: renderSshKey(k) } };
  });
  add('DELETE', '/v2/account/keys/{ssh_key_identifier}', (req) => {
    cloud.deleteKey(key(req.params['ssh_key_identifier']));
    return { status: 204 };
  });

  return routes;
}

/** Literal segments win over `{params}`; returns the match and whether the path exists for another method. */
export function matchRoute(
  routes: readonly Route[],
  method: string,
  path: string,
): { match: RouteMatch | undefined; pathKnown: boolean; template: string | undefined } {
  const parts = path.split('/').filter(Boolean);
  let best: { route: Route; params: Record<string, string>; literals: number } | undefined;
  let pathKnown = false;
  let template: string | undefined;
  for (const route of routes) {
    if (route.segments.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let literals = 0;
    const ok = route.segments.every((seg, i) => {
      const part = parts[i] ?? '';
      if (seg.startsWith('{')) {
        params[seg.slice(1, -1)] = decodeURIComponent(part);
        return true;
      }
      literals++;
      return seg === part;
    });
    if (!ok) continue;
    pathKnown = true;
    if (route.method !== method) {
      template ??= route.template;
      continue;
    }
    if (!best || literals > best.literals) best = { route, params, literals };
  }
  return {
    match: best && { route: best.route, params: best.params },
    pathKnown,
    template: best?.route.template ?? template,
  };
}
