// Kept for existing imports: `dosvob sync` lives in commands/sync.ts.
export { formatResult, sync, type SyncOptions } from './commands/sync';
