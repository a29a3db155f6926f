// Just enough of cloud-config YAML to read `ssh_keys: {ed25519_private, ed25519_public}` from user_data:
// a top-level `ssh_keys:` mapping whose values are plain/quoted scalars or `|` block scalars.

export interface CloudConfigHostKey {
  privateKey: string;
  publicKey: string | undefined;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

function unquote(value: string): string {
  const v = value.trim();
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) {
    return v.slice(1, -1);
  }
  return v;
}

/** The `ssh_keys` mapping of a `#cloud-config` document, as strings; undefined if there is none. */
export function parseCloudConfigSshKeys(userData: string): Record<string, string> | undefined {
  const lines = userData.replace(/\r\n/g, '\n').split('\n');
  const first = lines.find((l) => l.trim() !== '');
  if (!first || first.trim() !== '#cloud-config') return undefined;
  const start = lines.findIndex((l) => /^ssh_keys:\s*(#.*)?$/.test(l));
  if (start < 0) return undefined;
  const result: Record<string, string> = {};
  let i = start + 1;
  let childIndent: number | undefined;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    if (line.trim() === '' || line.trimStart().startsWith('#')) {
      i++;
      continue;
    }
    const indent = indentOf(line);
    if (indent === 0) break;
    childIndent ??= indent;
    if (indent !== childIndent) {
      i++;
      continue;
    }
    const m = /^\s*([A-Za-z0-9_]+):\s*(.*)$/.exec(line);
    if (!m) {
      i++;
      continue;
    }
    const key = m[1] ?? '';
    const rest = (m[2] ?? '').trim();
    i++;
    if (/^[|>][-+]?$/.test(rest)) {
      const block: string[] = [];
      let blockIndent: number | undefined;
      while (i < lines.length) {
        const l = lines[i] ?? '';
        if (l.trim() !== '' && indentOf(l) <= childIndent) break;
        if (l.trim() !== '') blockIndent ??= indentOf(l);
        block.push(l);
        i++;
      }
      while (block.length > 0 && (block[block.length - 1] ?? '').trim() === '') block.pop();
      const text = block.map((l) => l.slice(blockIndent ?? 0)).join(rest.startsWith('>') ? ' ' : '\n');
      result[key] = rest.endsWith('-') ? text : `${text}\n`;
    } else {
      result[key] = unquote(rest);
    }
  }
  return result;
}

/** The ed25519 host key set through cloud-config, if user_data has one. */
export function hostKeyFromUserData(userData: string | undefined): CloudConfigHostKey | undefined {
  if (!userData) return undefined;
  const keys = parseCloudConfigSshKeys(userData);
  const privateKey = keys?.['ed25519_private'];
  if (!privateKey) return undefined;
  return { privateKey, publicKey: keys['ed25519_public'] };
}
