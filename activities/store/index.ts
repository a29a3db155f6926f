export * from './chunks.js';
export * from './errors.js';
export * from './identity.js';
export * from './inspect.js';
export * from './layout.js';
export * from './lock.js';
export * from './manifest.js';
export * from './restore.js';
export * from './staging.js';
export * from './versions.js';
export {
  VolumeStore,
  hashImage,
  listStores,
  verifyImage,
  type ApplyStep,
  type OpenStoreOptions,
  type RecoveryOutcome,
  type StoreHooks,
  type VerifyResult,
} from './store.js';
