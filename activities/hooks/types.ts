// What the workflow and the hook activities exchange: plain data, no secrets (no key, no token, no commands: a
// command may carry a password, so it stays in the worker's conf.json and only its hook's id travels).

/** A volume's hook as the workflow sees it. */
export interface HookSummary {
  /** Identifies the hook's whole configuration (commands included) without revealing it: a short hash. */
  hookId: string;
  /** The glob that matched. */
  volumes: string;
  droplet: string;
  user: string;
  port: number;
  hostKeyFingerprint: string;
  maxFreezeSeconds: number;
  hooksRequired: boolean;
}

export interface FreezeInput {
  volumeName: string;
  hookId: string;
  /** With the volume's name, names the freeze's token on the droplet: every attempt of one run finds its own. */
  runId: string;
}

export interface FreezeResult {
  dropletId: string;
  dropletName: string;
  ip: string;
  /** The freeze's generation on the droplet (the directory of its token and timer). */
  generation: string;
  /** A retried attempt found the freeze its earlier attempt made still in place. */
  again: boolean;
}

export type ThawInput = FreezeInput;

export interface ThawResult {
  /**
   * `dosvob`: this thaw ran the thaw command. `timer`: the droplet's dead-man timer had already run it (the freeze
   * outlived max_freeze_seconds). `none`: nothing was frozen (the freeze never started, or failed and undid itself).
   */
  thawedBy: 'dosvob' | 'timer' | 'none';
}

export { HookFailureTypes } from '../../common/hook-failures';
