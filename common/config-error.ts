// Its own module so that code which only recognises the error (the CLI's error reporting) does not load the config
// schema and zod with it: `dosvob status` starts faster.

/** A user mistake in configuration: reported as one clear message, exit code 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
