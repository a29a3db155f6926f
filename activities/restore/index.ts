export {
  createRestoreTransferActivities,
  type RestoreHeartbeat,
  type RestoreToDeviceInput,
  type RestoreToDeviceResult,
  type RestoreTransferActivities,
  type RestoreTransferDeps,
  type RestoreVersionCheck,
} from './activity.js';
export { checkVersionForRestore, type VersionCheckResult } from './check.js';
export {
  restoreVersionToDevice,
  type RestoreProgress,
  type RestoreResumePoint,
  type RestoreToDeviceOptions,
} from './core.js';
export { encodeBlock } from './compress.js';
export { DeviceTooSmallError, DeviceVerifyError } from './errors.js';
