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
