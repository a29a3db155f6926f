// The worker's own configuration, as a run needs it: resolved in an activity so a run started
// with no input (a Temporal Schedule, `tctl`, `temporal`) uses the installation's conf.json,
// and so the token never passes through workflow inputs.
import type { Config } from '../common/config';
import type { Prices } from '../common/pricing';
import { summarizeHook } from './hooks/activities';
import type { HookSummary } from './hooks/types';

export interface RunSettings {
  regions: string[];
  include: string[];
  exclude: string[];
  dropletSize: string;
  dropletImage: string;
  concurrency: number;
  storeTaskQueue: string;
  blockSize: number | undefined;
  prices: Prices;
  /** This installation's id, in the names and tags of what a run creates (common/installation.ts). */
  installationId: string;
  /** conf.json `hooks` without commands or keys (the worker matches them to volumes); absent in older runs. */
  hooks?: HookSummary[];
  /** conf.json `verify` (absent in runs recorded before issue 12: `hashes`). */
  verify?: 'hashes' | 'fsck';
}

export interface SettingsOverrides {
  regions?: string[];
  include?: string[];
  exclude?: string[];
}

export function createSettingsActivities(config: Config, installation: { installationId: string }) {
  return {
    async resolveRunSettings(overrides: SettingsOverrides): Promise<RunSettings> {
      return {
        regions: overrides.regions ?? [...config.regions],
        include: overrides.include ?? [...config.include],
        exclude: overrides.exclude ?? [...config.exclude],
        dropletSize: config.dropletSize,
        dropletImage: config.dropletImage,
        concurrency: config.concurrency,
        storeTaskQueue: config.storeTaskQueue,
        blockSize: config.blockSize,
        prices: config.prices,
        installationId: installation.installationId,
        hooks: (config.hooks ?? []).map(summarizeHook),
        verify: config.verify ?? 'hashes',
      };
    },
  };
}

export type SettingsActivities = ReturnType<typeof createSettingsActivities>;
