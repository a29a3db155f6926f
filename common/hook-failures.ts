// The failure types of the freeze-hook activities (ApplicationFailure.type), shared with the workflow that tells a
// refusal (nothing ran on the droplet, no thaw owed) from a failure. No imports: workflow code uses it.
export const HookFailureTypes = {
  /** Refused before any command ran: key missing, droplet unknown, login refused, configuration changed. */
  refused: 'HookRefused',
  /** The droplet presented another host key than conf.json pins: refused before any command ran. */
  hostKeyMismatch: 'HookHostKeyMismatch',
  /** The freeze or thaw command ran and failed, or the freeze outlived its timer, or the droplet was unreachable. */
  failed: 'HookFailed',
} as const;
