// A store workflow that failed because the request named something the store does not have (a volume, version, time)
// or something it refuses (an existing file): one line and exit code 2, as for any bad input.
import { STORE_REQUEST_INVALID } from '../../activities/store-ops/select';
import { ExitCode, UserError, rootApplicationFailure } from '../errors';

export function asUserError(err: unknown): never {
  const app = rootApplicationFailure(err);
  if (app?.type === STORE_REQUEST_INVALID) throw new UserError(app.message, ExitCode.badInput);
  throw err;
}
