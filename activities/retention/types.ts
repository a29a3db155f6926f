// What pruning and garbage collection report. No Node imports: the workflows and the CLI use these types too.

export interface PruneInput {
  /** Decide and report, change nothing (no version removed, no chunk removed, no lock file written). */
  dryRun?: boolean;
  /** Run garbage collection after pruning (default true). */
  gc?: boolean;
  /** GC sweeps only unmarked chunks older than the mark's start minus this; default DEFAULT_GC_MARGIN_MS. */
  gcMarginMs?: number;
  /** 'summary' leaves out the per-version verdicts (the run's result needs only what was removed). Default 'full'. */
  detail?: 'full' | 'summary';
}

export interface VersionVerdict {
  versionId: string;
  time: string;
  /** The lineage: a volume deleted and re-created under the same name is a new lineage of the same key. */
  volumeId: string;
  newest: boolean;
  protected: boolean;
  keep: boolean;
  /** Every rule keeping it (`last 1`, `daily 2026-11-30`, `protected`, …); empty when removed. */
  reasons: string[];
}

export interface StorePruneReport {
  key: string;
  /** Newest first; left out with detail 'summary'. */
  versions?: VersionVerdict[];
  kept: number;
  /** Removed (or, in a dry run, to be removed). */
  removed: string[];
  /** Not pruned this time, and why (a sync holds the store's lock). */
  skipped?: string;
  error?: string;
}

export interface GcReport {
  dryRun: boolean;
  /** ISO time the mark began; the sweep spares every chunk modified after markStart - marginMs. */
  markStart: string;
  marginMs: number;
  /** Chunks some kept version needs. */
  markedChunks: number;
  chunksBefore: number;
  chunksRemoved: number;
  bytesFreed: number;
  /** Unmarked chunks spared because they are newer than the cutoff (a sync may be about to need them). */
  youngUnneeded: number;
  tmpRemoved: number;
  tmpBytesFreed: number;
}

export interface PruneReport {
  dryRun: boolean;
  /** The policy in words (`last 6, daily 7, weekly 4, monthly 6`). */
  policy: string;
  stores: StorePruneReport[];
  versionsRemoved: number;
  gc?: GcReport;
  gcError?: string;
}

/** What a backup run's result says about pruning. */
export interface PruneOutcome {
  ok: boolean;
  versionsRemoved: number;
  removed: { key: string; versionIds: string[] }[];
  chunksRemoved: number;
  bytesFreed: number;
  /** Stores left alone this time (busy), with why. */
  skipped: string[];
  /** Why pruning or GC failed (the backup itself still succeeded). */
  error?: string;
}

export interface SetProtectedInput {
  /** A volume name or a store key (`data`, `data@fra1`). */
  volume: string;
  /** A version id, or a prefix of one that names exactly one version. */
  version: string;
  protected: boolean;
}

export interface SetProtectedResult {
  key: string;
  versionId: string;
  protected: boolean;
  /** It already was in that state. */
  unchanged: boolean;
}
