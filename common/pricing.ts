// DigitalOcean's published prices (USD), overridable in conf.json's "prices".
export const DEFAULT_PRICES = {
  /** s-1vcpu-1gb: $6/month, billed per second since 2026 (60 s minimum). */
  droplet_per_hour: 0.00893,
  volume_per_gib_month: 0.1,
  snapshot_per_gib_month: 0.06,
} as const satisfies Record<string, number>;

export type Prices = { readonly [K in keyof typeof DEFAULT_PRICES]: number };

const SECONDS_PER_MONTH = 730 * 3600;

export interface ResourceSeconds {
  dropletSeconds: number;
  volumeGibSeconds: number;
  snapshotGibSeconds: number;
}

export function estimateCostUsd(usage: ResourceSeconds, prices: Prices): number {
  const droplet = (Math.max(usage.dropletSeconds, usage.dropletSeconds > 0 ? 60 : 0) / 3600) * prices.droplet_per_hour;
  const volume = (usage.volumeGibSeconds / SECONDS_PER_MONTH) * prices.volume_per_gib_month;
  const snapshot = (usage.snapshotGibSeconds / SECONDS_PER_MONTH) * prices.snapshot_per_gib_month;
  return droplet + volume + snapshot;
}
