// Activities on the local backup store itself (not the transfer): they run on the store task queue, on the worker
// that holds the backups directory.
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { inspectImages, type ImageReport } from './inspect.js';

export interface InspectImagesInput {
  /** Read every image in full and check each block against its manifest. */
  verify: boolean;
}

export interface InspectImagesHeartbeat {
  volumeName: string;
  blocksDone: number;
  blockCount: number;
}

export function createStoreActivities(deps: { backupsDir: string }) {
  return {
    /** List the images, finish updates a crash interrupted, and with `verify` check every block. */
    async inspectImages(input: InspectImagesInput): Promise<ImageReport[]> {
      const ctx = Context.current();
      try {
        return await inspectImages(deps.backupsDir, {
          verify: input.verify,
          signal: ctx.cancellationSignal,
          // Throttled by the worker (maxHeartbeatThrottleInterval); also how cancellation reaches a long verify.
          onProgress: (p) => ctx.heartbeat(p satisfies InspectImagesHeartbeat),
        });
      } catch (err) {
        if (ctx.cancellationSignal.aborted) throw new CancelledFailure('image inspection cancelled');
        throw err;
      }
    },
  };
}

export type StoreActivities = ReturnType<typeof createStoreActivities>;
