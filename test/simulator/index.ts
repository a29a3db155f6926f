// DigitalOcean API simulator for dosvob's tests: `startSimulator()` and its types.
export { startSimulator, Simulator } from './simulator';
export { devicePath } from './droplet-ssh';
export { fingerprintOf } from './cloud';
export type {
  ActionInfo,
  CallLogEntry,
  CreationCounts,
  DropletInfo,
  DropletSshInfo,
  Faults,
  LiveResources,
  ResourceSeconds,
  RuntimeOptions,
  SimulatorOptions,
  SnapshotInfo,
  SshKeyInfo,
  VolumeInfo,
} from './types';
