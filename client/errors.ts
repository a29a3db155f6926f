// How the CLI reports failures: one clear line and an exit code (0 ok, 1 a volume failed, 2 bad input).
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { ConfigError } from '../common/config-error';

export const ExitCode = { ok: 0, volumeFailed: 1, badInput: 2 } as const;

/** A user-facing error: printed without a stack trace. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.badInput,
  ) {
    super(message);
  }
}

const BAD_INPUT_TYPES = new Set(['DigitalOceanAuthError', 'ConfigurationError', 'FormatVersionMismatch']);

/** The innermost application failure of a workflow failure chain. */
export function rootApplicationFailure(err: unknown): ApplicationFailure | undefined {
  let cause: unknown = err;
  let found: ApplicationFailure | undefined;
  while (cause instanceof Error) {
    if (cause instanceof ApplicationFailure) found = cause;
    cause = (cause as { cause?: unknown }).cause;
  }
  return found;
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError || err instanceof UserError) return err instanceof UserError ? err.exitCode : 2;
  const app = rootApplicationFailure(err);
  if (app?.type && BAD_INPUT_TYPES.has(app.type)) return ExitCode.badInput;
  if (err instanceof WorkflowFailedError) return ExitCode.volumeFailed;
  return ExitCode.volumeFailed;
}

export function describeError(err: unknown): string {
  if (err instanceof WorkflowFailedError) {
    const app = rootApplicationFailure(err);
    if (app) return app.message;
    if (err.cause instanceof ActivityFailure && err.cause.cause) return err.cause.cause.message;
    return err.cause?.message ?? err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
