// Retention's activities: on the store task queue, on the worker that holds the backups directory (its conf.json's
// policy is the one applied, so the policy never passes through workflow inputs).
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { describePolicy, type RetentionPolicy } from '../../common/retention';
import { listStoreIdentities, listVersions, setProtected, VersionNotFoundError } from '../store/index.js';
import { STORE_REQUEST_INVALID } from '../store-ops/select';
import { collectGarbage } from './gc';
import { pruneStores } from './prune';
import type { PruneInput, PruneReport, SetProtectedInput, SetProtectedResult } from './types';

export interface PruneHeartbeat {
  phase: 'prune' | 'gc';
  key?: string;
}

export interface RetentionActivityDeps {
  backupsDir: string;
  policy: RetentionPolicy;
}

/** A volume name or a store key -> the store key (bad input: the CLI's exit 2); a name two regions share must be given as its key. */
async function resolveKey(backupsDir: string, volume: string): Promise<string> {
  const stores = await listStoreIdentities(backupsDir);
  const exact = stores.find((s) => s.key === volume);
  if (exact) return exact.key;
  const named = stores.filter((s) => s.name === volume);
  if (named.length === 1) return named[0]!.key;
  if (named.length > 1) {
    throw ApplicationFailure.nonRetryable(
      `${volume} names ${named.length} stores (${named.map((s) => s.key).join(', ')}): give one of those`,
      STORE_REQUEST_INVALID,
    );
  }
  throw ApplicationFailure.nonRetryable(`no backups of a volume ${volume}`, STORE_REQUEST_INVALID);
}

export function createRetentionActivities(deps: RetentionActivityDeps) {
  return {
    /** Prune every store by the policy, then collect garbage. Safe to retry: it decides again from what is on disk. */
    async pruneVersions(input: PruneInput = {}): Promise<PruneReport> {
      const ctx = Context.current();
      const dryRun = input.dryRun === true;
      // Beats on a timer too: GC may wait for the chunk store's lock while a sync keeps the blocks of a large update,
      // which can take longer than the heartbeat timeout, and waiting is not being stuck.
      let phase: PruneHeartbeat = { phase: 'prune' };
      const beat = (p: PruneHeartbeat) => ctx.heartbeat((phase = p));
      const timer = setInterval(() => ctx.heartbeat(phase), 10_000);
      try {
        const stores = await pruneStores(deps.backupsDir, deps.policy, {
          dryRun,
          signal: ctx.cancellationSignal,
          onStore: (key) => beat({ phase: 'prune', key }),
        });
        const report: PruneReport = {
          dryRun,
          policy: describePolicy(deps.policy),
          stores: input.detail === 'summary' ? stores.map(({ versions: _omitted, ...rest }) => rest) : stores,
          versionsRemoved: stores.reduce((n, s) => n + s.removed.length, 0),
        };
        if (input.gc !== false) {
          try {
            beat({ phase: 'gc' });
            report.gc = await collectGarbage(deps.backupsDir, {
              dryRun,
              marginMs: input.gcMarginMs,
              ...(dryRun ? { assumeRemoved: new Map(stores.map((s) => [s.key, s.removed])) } : {}),
              signal: ctx.cancellationSignal,
              hooks: { onRemoved: () => beat({ phase: 'gc' }) },
            });
          } catch (err) {
            if (ctx.cancellationSignal.aborted) throw err;
            report.gcError = err instanceof Error ? err.message : String(err);
          }
        }
        return report;
      } catch (err) {
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('pruning cancelled');
        throw err;
      } finally {
        clearInterval(timer);
      }
    },

    /** `dosvob versions protect|unprotect`: a protected version is never pruned. */
    async setVersionProtected(input: SetProtectedInput): Promise<SetProtectedResult> {
      const key = await resolveKey(deps.backupsDir, input.volume);
      const versions = await listVersions(deps.backupsDir, key);
      const matching = versions.filter((v) => v.versionId.startsWith(input.version));
      const exact = versions.find((v) => v.versionId === input.version);
      const version = exact ?? (matching.length === 1 ? matching[0] : undefined);
      if (!version) {
        throw ApplicationFailure.nonRetryable(
          matching.length > 1
            ? `${input.version} matches ${matching.length} versions of ${key}: give more of the id`
            : `${key} has no version ${input.version} (dosvob versions ${key} lists them)`,
          STORE_REQUEST_INVALID,
        );
      }
      if (version.protected === input.protected) {
        return { key, versionId: version.versionId, protected: input.protected, unchanged: true };
      }
      try {
        await setProtected(deps.backupsDir, key, version.versionId, input.protected);
      } catch (err) {
        // Pruned between the listing and now.
        if (err instanceof VersionNotFoundError)
          throw ApplicationFailure.nonRetryable(err.message, STORE_REQUEST_INVALID);
        throw err;
      }
      return { key, versionId: version.versionId, protected: input.protected, unchanged: false };
    },
  };
}

export type RetentionActivities = ReturnType<typeof createRetentionActivities>;
