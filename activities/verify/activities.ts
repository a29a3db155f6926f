// Checks of kept versions, on the store task queue (the worker that holds the backups directory): the backup's check of
// each new version (`verify: fsck`), and `dosvob verify` on any kept version. Both heartbeat while they read or while
// the checker runs, which is also how a cancellation reaches them.
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { VersionNotFoundError } from '../store';
import {
  STORE_REQUEST_INVALID,
  StoreRequestError,
  chooseVersion,
  resolveOneStore,
  resolveStores,
} from '../store-ops/select';
import type { CheckResult } from './checkers';
import type { FsckPart } from './fsck';
import {
  checkVersionFilesystem,
  checkVersionHashes,
  type VersionCheckProgress,
  type VersionFsckResult,
} from './version-check';

export interface CheckVersionFilesystemInput {
  storeKey: string;
  versionId: string;
}

export interface VerifyVersionsRequest {
  /** A volume name, store key or `name@region`; every store when absent. */
  volume?: string;
  versionId?: string;
  /** The newest version at or before this instant (ISO). */
  at?: string;
  /** Run the filesystem checker instead of reading the blocks against their hashes. */
  fsck: boolean;
}

export interface VersionVerifyResult {
  key: string;
  versionId: string;
  /** When the version was committed. */
  time: string;
  newest: boolean;
  kind: 'hashes' | 'fsck';
  result: CheckResult;
  summary: string;
  /** fsck: the image itself, a clone of it, or a temporary restore. */
  source?: VersionFsckResult['source'];
  parts?: FsckPart[];
  blocksChecked?: number;
}

export interface VerifyVersionsReport {
  results: VersionVerifyResult[];
  /** 0: nothing checked failed (unchecked filesystems included); 1: some version failed its check. */
  exitCode: number;
}

export interface VerifyActivityDeps {
  backupsDir: string;
  /** Where the checkers are looked for; default $PATH and the sbin directories. */
  checkerSearchPath?: readonly string[];
}

function asFailure(err: unknown, signal: AbortSignal, what: string): unknown {
  if (signal.aborted) return new CancelledFailure(`${what} cancelled`);
  if (err instanceof StoreRequestError || err instanceof VersionNotFoundError) {
    return ApplicationFailure.nonRetryable(err.message, STORE_REQUEST_INVALID);
  }
  return err;
}

export function createVerifyActivities(deps: VerifyActivityDeps) {
  const { backupsDir } = deps;
  return {
    /** fsck of one version, recorded in its checks (a failed one makes it suspect). */
    async checkVersionFilesystem(input: CheckVersionFilesystemInput): Promise<VersionFsckResult> {
      const ctx = Context.current();
      try {
        return await checkVersionFilesystem(backupsDir, input.storeKey, input.versionId, {
          signal: ctx.cancellationSignal,
          searchPath: deps.checkerSearchPath,
          onProgress: (p) => ctx.heartbeat(p satisfies VersionCheckProgress),
        });
      } catch (err) {
        throw asFailure(err, ctx.cancellationSignal, 'filesystem check');
      }
    },

    /** `dosvob verify`: the chosen version of each store asked for, by its hashes or its filesystem. */
    async verifyVersions(request: VerifyVersionsRequest): Promise<VerifyVersionsReport> {
      const ctx = Context.current();
      const options = {
        // Unlike the backup's own check, this one may meet a scheduled sync of the volume: it never holds the store.
        newest: 'clone' as const,
        signal: ctx.cancellationSignal,
        searchPath: deps.checkerSearchPath,
        onProgress: (p: VersionCheckProgress) => ctx.heartbeat(p),
      };
      try {
        if (request.versionId !== undefined && request.volume === undefined) {
          throw new StoreRequestError('--version needs a VOLUME: version ids belong to one volume');
        }
        const stores =
          request.volume === undefined
            ? await resolveStores(backupsDir)
            : request.versionId !== undefined
              ? [await resolveOneStore(backupsDir, request.volume)]
              : await resolveStores(backupsDir, request.volume);
        const results: VersionVerifyResult[] = [];
        for (const s of stores) {
          const v = await chooseVersion(backupsDir, s.key, { versionId: request.versionId, at: request.at });
          const base = { key: s.key, versionId: v.versionId, time: v.time, newest: v.newest };
          if (request.fsck) {
            const r = await checkVersionFilesystem(backupsDir, s.key, v.versionId, options);
            results.push({
              ...base,
              kind: 'fsck',
              result: r.result,
              summary: r.summary,
              source: r.source,
              parts: r.parts,
            });
          } else {
            const r = await checkVersionHashes(backupsDir, s.key, v.versionId, options);
            results.push({
              ...base,
              kind: 'hashes',
              result: r.result,
              summary: r.summary,
              blocksChecked: r.blocksChecked,
            });
          }
        }
        return { results, exitCode: results.some((r) => r.result === 'failed') ? 1 : 0 };
      } catch (err) {
        throw asFailure(err, ctx.cancellationSignal, 'verification');
      }
    },
  };
}

export type VerifyActivities = ReturnType<typeof createVerifyActivities>;
