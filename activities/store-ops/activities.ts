// Activities that read (or check) the kept versions, on the store task queue: the worker that holds the backups
// directory. A request naming something the store does not have fails at once, not retried, as type
// StoreRequestInvalid (the CLI's exit code 2).
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { VersionDamagedError, VersionNotFoundError } from '../store';
import { restoreToFile, type RestoreFileRequest, type RestoreFileResult, type RestoreProgress } from './restore-file';
import { chooseVersionToRestore, type ChosenVersion } from './choose-version';
import { STORE_REQUEST_INVALID, StoreRequestError, type VersionChoice } from './select';
import { verifyStore, type StoreVerifyProgress, type StoreVerifyReport, type Subset } from './verify';
import { versionsReport, type VersionsReport } from './versions-report';

export { STORE_REQUEST_INVALID };

function asFailure(err: unknown, signal: AbortSignal, what: string): unknown {
  if (signal.aborted) return new CancelledFailure(`${what} cancelled`);
  if (err instanceof StoreRequestError || err instanceof VersionNotFoundError) {
    return ApplicationFailure.nonRetryable(err.message, STORE_REQUEST_INVALID);
  }
  // Reading it again finds the same damage.
  if (err instanceof VersionDamagedError) return ApplicationFailure.nonRetryable(err.message, 'VersionDamaged');
  return err;
}

export function createStoreOpsActivities(deps: { backupsDir: string }) {
  return {
    /** The kept versions of one volume (or all), and what the store costs. */
    async listStoreVersions(input: { volume?: string }): Promise<VersionsReport> {
      const ctx = Context.current();
      try {
        return await versionsReport(deps.backupsDir, input.volume);
      } catch (err) {
        throw asFailure(err, ctx.cancellationSignal, 'listing versions');
      }
    },

    /** The version a restore means (by id, time or newest), refused at once when there is no such thing. */
    async chooseRestoreVersion(input: VersionChoice & { volume: string }): Promise<ChosenVersion> {
      const ctx = Context.current();
      try {
        return await chooseVersionToRestore(deps.backupsDir, input);
      } catch (err) {
        throw asFailure(err, ctx.cancellationSignal, 'choosing the version');
      }
    },

    /** Write a version to a file on this machine; heartbeats carry the bytes done (and cancellation). */
    async restoreVersionToFile(input: RestoreFileRequest): Promise<RestoreFileResult> {
      const ctx = Context.current();
      try {
        return await restoreToFile(deps.backupsDir, input, {
          signal: ctx.cancellationSignal,
          onProgress: (p) => ctx.heartbeat(p satisfies RestoreProgress),
        });
      } catch (err) {
        throw asFailure(err, ctx.cancellationSignal, 'restore');
      }
    },

    /** Images, chunks and versions checked (all, or one slice of them). */
    async verifyStore(input: { subset?: Subset }): Promise<StoreVerifyReport> {
      const ctx = Context.current();
      try {
        return await verifyStore(deps.backupsDir, {
          subset: input.subset,
          signal: ctx.cancellationSignal,
          onProgress: (p) => ctx.heartbeat(p satisfies StoreVerifyProgress),
        });
      } catch (err) {
        throw asFailure(err, ctx.cancellationSignal, 'verification');
      }
    },
  };
}

export type StoreOpsActivities = ReturnType<typeof createStoreOpsActivities>;
