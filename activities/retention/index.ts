export * from './activities';
export * from './gc';
export * from './prune';
export * from './types';
