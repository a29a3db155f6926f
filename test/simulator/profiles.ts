// Timing profiles: how long DigitalOcean takes for each step, as a distribution per step, so that a
// benchmark sees a real account's pace (played at 1x, or compressed by a time scale).
//
// Where the figures come from. There is no internet on the machines this was written on, so none of
// them was measured for this profile: they are what DigitalOcean documents and what public reports
// (the community Q&A, issue trackers of doctl and terraform-provider-digitalocean, blog posts timing
// droplet boots) commonly say, and where neither gives a number, an estimate, marked as such. Replace
// them with a real account's figures when you have some.
import { Rng } from './rng';

/** The steps whose duration a profile sets. */
export type TimedStep =
  /** POST /v2/droplets until the droplet is `active` and its SSH server answers (the simulator has no gap). */
  | 'dropletReady'
  /** POST /v2/volumes/{id}/snapshots: the answer comes once the snapshot exists. */
  | 'snapshotCreate'
  /** POST /v2/volumes with a snapshot_id: the answer comes once the volume exists. */
  | 'volumeFromSnapshot'
  /** A volume `attach` action, in-progress until completed. */
  | 'attach'
  /** A volume `detach` action. */
  | 'detach'
  /** DELETE of a volume, snapshot, droplet or key: the time to answer. */
  | 'delete'
  /** Any other request: the API's own latency. */
  | 'request';

/** A lognormal distribution given by its median and 90th percentile, in milliseconds at 1x. */
export interface Spread {
  medianMs: number;
  p90Ms: number;
  /** Where the figure comes from. */
  source: string;
}

export type Profile = Readonly<Record<TimedStep, Spread>>;

/** z of the 90th percentile of a standard normal. */
const Z90 = 1.2815515655446004;

export const REALISTIC: Profile = {
  dropletReady: {
    medianMs: 45_000,
    p90Ms: 75_000,
    source:
      'DigitalOcean advertises droplets "in 55 seconds" and most public timings of create → active are 30–60 s; ' +
      'Debian 12 cloud-init brings sshd up some 10–20 s after active. Median and p90 are estimates from those.',
  },
  snapshotCreate: {
    medianMs: 20_000,
    p90Ms: 60_000,
    source:
      'estimate: the API answers a volume snapshot once it is taken; public reports range from a few seconds to ' +
      'about a minute (issue 13: "snapshots that take a minute"), with no clear dependence on the volume size',
  },
  volumeFromSnapshot: {
    medianMs: 8_000,
    p90Ms: 25_000,
    source:
      'estimate: creating a volume from a snapshot answers in seconds to tens of seconds in public reports ' +
      '(block storage clones the snapshot; the data is not copied before the answer)',
  },
  attach: {
    medianMs: 7_000,
    p90Ms: 15_000,
    source:
      'public reports and terraform-provider-digitalocean waits: an attach action completes in about 5–15 s ' +
      '(issue 13: "attaches that take ten seconds")',
  },
  detach: {
    medianMs: 5_000,
    p90Ms: 12_000,
    source: 'estimate: detach actions are reported a little faster than attaches, about 3–12 s',
  },
  delete: {
    medianMs: 800,
    p90Ms: 2_500,
    source: 'estimate: DELETEs answer 204 in about a second; the resource is gone from lists at once',
  },
  request: {
    medianMs: 150,
    p90Ms: 400,
    source: 'estimate: round trip to api.digitalocean.com from a nearby region, about 100–400 ms',
  },
};

export const PROFILES = { realistic: REALISTIC } as const;
export type ProfileName = keyof typeof PROFILES;

export function isProfileName(name: string): name is ProfileName {
  return Object.hasOwn(PROFILES, name);
}

/**
 * Draws each step's duration from its profile (seeded, so a run is reproducible), multiplied by
 * `timeScale` (0.1 plays the profile ten times faster).
 */
export class TimingSampler {
  private readonly rng: Rng;

  constructor(
    readonly profile: Profile,
    readonly timeScale: number,
    seed: number,
  ) {
    if (!(timeScale > 0)) throw new Error(`time scale must be positive, got ${timeScale}`);
    this.rng = new Rng(seed);
  }

  /** One draw, in milliseconds at the time scale. */
  sample(step: TimedStep): number {
    return Math.round(lognormalMs(this.profile[step], this.standardNormal()) * this.timeScale);
  }

  /** Box–Muller from two uniform draws of the seeded generator. */
  private standardNormal(): number {
    const u = 1 - this.rng.next(); // (0, 1]: log(u) is finite
    const v = this.rng.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

/** The value of `spread` at standard-normal deviate `z`: median x (p90/median)^(z/z90). */
export function lognormalMs(spread: Spread, z: number): number {
  const sigma = Math.log(spread.p90Ms / spread.medianMs) / Z90;
  return spread.medianMs * Math.exp(sigma * z);
}

/** Which step a request is, for the time its answer takes. */
export function stepOfRequest(method: string, template: string, body: unknown): TimedStep {
  if (method === 'DELETE') return 'delete';
  if (method === 'POST' && template === '/v2/volumes/{volume_id}/snapshots') return 'snapshotCreate';
  if (method === 'POST' && template === '/v2/volumes') {
    const snapshot = body && typeof body === 'object' ? (body as { snapshot_id?: unknown }).snapshot_id : undefined;
    if (typeof snapshot === 'string') return 'volumeFromSnapshot';
  }
  return 'request';
}
