// Errors of a restore onto a device. `code` is the ApplicationFailure type the activity reports.
import { TransferError } from '../transfer/errors.js';

/** The target device is smaller than the version: no retry can fit it. */
export class DeviceTooSmallError extends TransferError {
  constructor(
    readonly devicePath: string,
    readonly deviceBytes: number,
    readonly versionBytes: number,
  ) {
    super(
      `the target device ${devicePath} has ${deviceBytes} bytes, the version needs ${versionBytes}: make the volume at least that large`,
      'DeviceTooSmall',
      false,
    );
    this.name = 'DeviceTooSmallError';
  }
}

/** Blocks the device did not give back as written, even after writing them a second time. */
export class DeviceVerifyError extends TransferError {
  constructor(
    readonly devicePath: string,
    readonly blocks: readonly number[],
  ) {
    const shown = blocks.slice(0, 20).join(', ') + (blocks.length > 20 ? `, … (${blocks.length} in all)` : '');
    super(
      `read-back of ${devicePath} failed: block(s) ${shown} did not read back as written, twice; the device does not ` +
        'keep what is written to it, so this volume is not a restore',
      'RestoreVerifyFailed',
      false,
    );
    this.name = 'DeviceVerifyError';
  }
}
