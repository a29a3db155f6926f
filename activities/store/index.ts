export * from './errors.js';
export * from './inspect.js';
export * from './layout.js';
export * from './manifest.js';
export * from './staging.js';
export {
  VolumeStore,
  hashImage,
  listStores,
  verifyImage,
  type OpenStoreOptions,
  type RecoveryOutcome,
  type StoreHooks,
  type VerifyResult,
} from './store.js';
