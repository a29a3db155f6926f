// The workflow bundle's entry point: every workflow type dosvob registers.
export { backupWorkflow, progressQuery } from './backup';
export { imagesWorkflow } from './images';
export { pruneWorkflow, protectVersionWorkflow } from './prune';
export { restoreFileWorkflow, verifyStoreWorkflow, versionsWorkflow } from './versions';
export { cleanupWorkflow } from './cleanup';
export { verifyVersionWorkflow } from './verify';
export { restoreWorkflow } from './restore';
export { backupVolumeWorkflow } from './volume-child';
