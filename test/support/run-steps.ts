// The steps of a one-volume run, recognised by the DigitalOcean call that does each one, for tests
// that kill a worker or cancel the run "during" a step (from the simulator's `onHandled` hook).
import type { HandledCall } from '../simulator/http-server';

export interface RunStep {
  name: string;
  at: (call: HandledCall) => boolean;
}

export function apiCall(method: string, template: string, actionType?: string): RunStep['at'] {
  return (c) =>
    c.method === method &&
    c.template === template &&
    (actionType === undefined || (c.requestBody as { type?: string } | undefined)?.type === actionType);
}

/** Up to and including the attach (the snapshot and copy run while the droplet boots). */
export const STEPS_BEFORE_TRANSFER: readonly RunStep[] = [
  { name: 'sweep', at: apiCall('GET', '/v2/droplets') },
  { name: 'register key', at: apiCall('POST', '/v2/account/keys') },
  { name: 'create droplet', at: apiCall('POST', '/v2/droplets') },
  { name: 'wait for droplet', at: apiCall('GET', '/v2/droplets/{droplet_id}') },
  { name: 'snapshot', at: apiCall('POST', '/v2/volumes/{volume_id}/snapshots') },
  { name: 'copy volume', at: apiCall('POST', '/v2/volumes') },
  { name: 'attach', at: apiCall('POST', '/v2/volumes/{volume_id}/actions', 'attach') },
];

/** After the transfer: the per-volume cleanup, then the run's own. */
export const STEPS_AFTER_TRANSFER: readonly RunStep[] = [
  { name: 'detach', at: apiCall('POST', '/v2/volumes/{volume_id}/actions', 'detach') },
  { name: 'delete copy', at: apiCall('DELETE', '/v2/volumes/{volume_id}') },
  { name: 'delete snapshot', at: apiCall('DELETE', '/v2/snapshots/{snapshot_id}') },
  { name: 'delete droplet', at: apiCall('DELETE', '/v2/droplets/{droplet_id}') },
  { name: 'delete key', at: apiCall('DELETE', '/v2/account/keys/{ssh_key_identifier}') },
];
