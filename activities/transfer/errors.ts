// Errors of the transfer. `code` is the ApplicationFailure type the activity reports; `retryable` says whether a
// retry of the same input can succeed.
export { DiskFullError, StoreFormatError, VolumeBusyError } from '../store/errors.js';

export class TransferError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransferError';
  }
}

export class HostKeyMismatchError extends TransferError {
  constructor(
    readonly host: string,
    readonly expectedFingerprint: string,
    readonly presentedFingerprint: string,
  ) {
    super(
      `host key mismatch for ${host}: expected ${expectedFingerprint}, the server presented ${presentedFingerprint}; refusing to connect`,
      'HostKeyMismatch',
      false,
    );
    this.name = 'HostKeyMismatchError';
  }
}

export class ProtocolMismatchError extends TransferError {
  constructor(message: string) {
    super(message, 'ProtocolMismatch', false);
    this.name = 'ProtocolMismatchError';
  }
}

/** The remote agent could not run or reported an error (python3 missing, device missing, read error). */
export class RemoteAgentError extends TransferError {
  constructor(message: string, retryable: boolean) {
    super(message, 'RemoteAgentError', retryable);
    this.name = 'RemoteAgentError';
  }
}

/**
 * The agent refused a block of a write job: its bytes did not hash to the hash sent with them (nothing of it was
 * written). A restore that streams blocks unchecked then finds out whether the store's copy is the cause.
 */
export class BlockRefusedError extends RemoteAgentError {
  constructor(
    message: string,
    readonly block: number,
  ) {
    super(message, true);
    this.name = 'BlockRefusedError';
  }
}

/** A received block did not match its hash (after re-fetching it), or the final digests disagree. */
export class IntegrityError extends TransferError {
  constructor(message: string) {
    super(message, 'IntegrityError', true);
    this.name = 'IntegrityError';
  }
}

export class ConnectionLostError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ConnectionLost', true, options);
    this.name = 'ConnectionLostError';
  }
}

export class TransferCancelledError extends TransferError {
  constructor(reason?: unknown) {
    super(`transfer cancelled${reason ? `: ${String(reason)}` : ''}; the previous image is intact`, 'Cancelled', false);
    this.name = 'TransferCancelledError';
  }
}

/** No byte arrived from the droplet for the stall limit. Retryable: the next attempt resumes from the staging log. */
export class TransferStalledError extends TransferError {
  constructor(readonly stallTimeoutMs: number) {
    super(
      `no data from the droplet for ${Math.round(stallTimeoutMs / 1000)} s: the transfer stalled; giving up this attempt (the next resumes where it stopped)`,
      'TransferStalled',
      true,
    );
    this.name = 'TransferStalledError';
  }
}

/**
 * The store worker derives the run's SSH keys from its own key_secret; the run was started by a worker with another.
 * No retry can succeed on this worker.
 */
export class KeySecretMismatchError extends TransferError {
  constructor(expectedFingerprint: string, derivedFingerprint: string) {
    super(
      `this worker's key_secret differs from the one that started the run: the run's SSH key is ${expectedFingerprint}, ` +
        `this worker derives ${derivedFingerprint}. Give every worker of this installation the same key_secret ` +
        '(conf.json or DOSVOB_KEY_SECRET)',
      'KeySecretMismatch',
      false,
    );
    this.name = 'KeySecretMismatchError';
  }
}
