// Command output and SSH errors go into failures, which Temporal keeps in the history: every secret the worker holds
// (the DigitalOcean token, the hook's private key) is cut out first, and the output is kept short.

const MAX_OUTPUT = 2000;

/** The forms of a secret worth looking for: the whole value and, for a PEM/OpenSSH key, each line of its body. */
function forms(secret: string): string[] {
  const lines = secret
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length >= 16 && !l.startsWith('-----'));
  return [secret.trim(), ...lines].filter((s) => s.length >= 8);
}

export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret) continue;
    for (const f of forms(secret)) out = out.split(f).join('[redacted]');
  }
  return out;
}

/** The tail of a command's output (the end says why it failed), redacted. */
export function outputForError(output: string, secrets: readonly (string | undefined)[]): string {
  const clean = redact(output, secrets).trim();
  if (clean === '') return '(no output)';
  return clean.length > MAX_OUTPUT ? `…${clean.slice(-MAX_OUTPUT)}` : clean;
}
