// Where dosvob keeps its own state (the embedded Temporal database, the generated key secret).
import { homedir } from 'node:os';
import path from 'node:path';

export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DOSVOB_DATA_DIR) return path.resolve(env.DOSVOB_DATA_DIR);
  const base = env.XDG_DATA_HOME ?? path.join(homedir(), '.local', 'share');
  return path.join(base, 'dosvob');
}

/** The repository root (scripts/ lives there), from this file's location. */
export const PROJECT_ROOT = path.resolve(__dirname, '..');
