// What a test needs but a machine may lack: a browser, or material from `../shared/` (beside the project in its
// own working copies and in CI, never in a user's clone). Outside CI such a test is skipped with the reason; in CI
// (CI=true), where everything is installed, a missing piece is a failure, not a silent skip.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

/** `../shared/` beside the project's root (DOSVOB_SHARED_DIR may point elsewhere). */
export const SHARED_DIR = process.env.DOSVOB_SHARED_DIR ?? path.resolve(__dirname, '../../../shared');

/** DigitalOcean's OpenAPI description, dereferenced into one file (`../shared/do-openapi/`). */
export const OPENAPI_SPEC =
  process.env.DOSVOB_OPENAPI_SPEC ?? path.join(SHARED_DIR, 'do-openapi', 'dosvob-subset.v2.deref.json');

/** Why `file` (from `../shared/`) cannot be used here, or undefined when it is there. */
export function sharedMissing(file: string): string | undefined {
  return existsSync(file) ? undefined : `${file} is missing (../shared/ is not beside this clone)`;
}

/**
 * Pass what is missing (undefined when nothing is); returns the `skip` option for the tests that need it. In CI it
 * also registers a failing test, so the run fails and says why.
 */
export function skipUnlessPresent(missing: string | undefined): string | undefined {
  if (missing && process.env.CI === 'true') {
    void test(`has what it needs in CI: ${missing}`, () => assert.fail(`${missing}; CI must provide it`));
  }
  return missing;
}
