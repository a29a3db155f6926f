// Errors of the local store. Each has a stable `code` the activity maps to an ApplicationFailure type.

export class StoreFormatError extends Error {
  readonly code = 'StoreFormatMismatch';
  constructor(
    message: string,
    readonly foundVersion: number | undefined,
  ) {
    super(message);
    this.name = 'StoreFormatError';
  }
}

export class DiskFullError extends Error {
  readonly code = 'LocalDiskFull';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DiskFullError';
  }
}

export class VolumeBusyError extends Error {
  readonly code = 'VolumeBusy';
  constructor(message: string) {
    super(message);
    this.name = 'VolumeBusyError';
  }
}

/** The manifest fails its own checks (torn, bit rot, edited): the image is re-hashed rather than trusted. */
export class ManifestDamagedError extends Error {
  readonly code = 'ManifestDamaged';
  constructor(message: string) {
    super(message);
    this.name = 'ManifestDamagedError';
  }
}

/**
 * Data in a committed redo log failed its SHA-256 (or the log could not be read) when it was applied. The image is left
 * consistent with its manifest, which marks the blocks concerned so that the next sync fetches them again.
 */
export class RedoLogDamagedError extends Error {
  readonly code = 'RedoLogDamaged';
  constructor(
    message: string,
    readonly blocks: readonly number[],
  ) {
    super(message);
    this.name = 'RedoLogDamagedError';
  }
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** Re-throws ENOSPC / EDQUOT as DiskFullError with a message saying what was being written. */
export function rethrowDiskFull(err: unknown, what: string): never {
  if (isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT')) {
    throw new DiskFullError(`local disk full while writing ${what}; the previous image is intact`, { cause: err });
  }
  throw err;
}

export class VersionNotFoundError extends Error {
  readonly code = 'VersionNotFound';
  constructor(message: string) {
    super(message);
    this.name = 'VersionNotFoundError';
  }
}

/** A block of a version could not be read with the content its manifest names (missing or damaged everywhere). */
export class VersionDamagedError extends Error {
  readonly code = 'VersionDamaged';
  constructor(
    message: string,
    readonly key: string,
    readonly versionId: string,
    readonly block: number,
  ) {
    super(message);
    this.name = 'VersionDamagedError';
  }
}
