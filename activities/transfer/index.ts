export {
  createTransferActivities,
  type TransferActivities,
  type TransferActivityDeps,
  type TransferHeartbeat,
  type TransferVolumeInput,
  type TransferVolumeResult,
} from './activity.js';
export {
  syncVolume,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_STRIPES,
  type Compression,
  type ResumePoint,
  type SyncVolumeOptions,
  type SyncVolumeResult,
  type TransferProgress,
} from './core.js';
export * from './errors.js';
export { PROTOCOL_VERSION, agentCommand, pythonAgent, type RemoteAgent } from './agent.js';
