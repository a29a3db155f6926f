// Task queues. DigitalOcean API activities and the workflow run on the main queue, on any worker.
// Activities that touch the local backup store run only on the store's own queue, polled by the one
// worker process that holds that store, so an image is never written from two places.
export const MAIN_TASK_QUEUE = 'dosvob';
export const DEFAULT_STORE_TASK_QUEUE = 'dosvob-store';
export const BACKUP_WORKFLOW_ID = 'dosvob-backup';
