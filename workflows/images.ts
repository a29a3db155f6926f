// The images workflow: what the local backup store holds, checked where it lives. The store can be on another
// machine than the one asking, so the work is an activity on the store's task queue.
import { proxyActivities } from '@temporalio/workflow';
import type { SettingsActivities } from '../activities/settings';
import type { ImageReport } from '../activities/store/inspect';
import type { StoreActivities } from '../activities/store/activities';

export interface ImagesInput {
  /** Read every image in full and check each block against its manifest (minutes for large images). */
  verify?: boolean;
}

const { resolveRunSettings } = proxyActivities<SettingsActivities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 5 },
});

export async function imagesWorkflow(input: ImagesInput = {}): Promise<ImageReport[]> {
  const { storeTaskQueue } = await resolveRunSettings({});
  const { inspectImages } = proxyActivities<StoreActivities>({
    taskQueue: storeTaskQueue,
    // Reading a large image takes a while; heartbeats (per block hashed) show it is alive and carry cancellation.
    startToCloseTimeout: '24 hours',
    heartbeatTimeout: '1 minute',
    retry: { maximumAttempts: 3 },
  });
  return await inspectImages({ verify: input.verify ?? false });
}
