// The remote half of the transfer protocol: agent.py beside this file (standard library python3 only), sent through
// the SSH session itself and executed from memory. Nothing is installed or left on the droplet. The wire protocol is
// documented at the top of agent.py; session.ts is the client side.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const PROTOCOL_VERSION = 3;

/** Beside this module in every layout dosvob runs from (a checkout through tsx, the Docker image's copy of activities/). */
export const AGENT_PATH = join(__dirname, 'agent.py');

const AGENT_BYTES = readFileSync(AGENT_PATH);
if (!AGENT_BYTES.includes(`PROTOCOL = ${PROTOCOL_VERSION}\n`)) {
  throw new Error(`${AGENT_PATH} does not speak protocol ${PROTOCOL_VERSION}: agent.py and agent.ts are out of step`);
}

/** The exec command: a one-line bootstrap that reads the agent's code from stdin and runs it. */
export function agentCommand(python = 'python3'): string {
  return agentCommandFor(AGENT_BYTES, python);
}

/** The bootstrap for other agent code of the same protocol (tests: agent.py with a fault hook in front). */
export function agentCommandFor(code: Buffer, python = 'python3'): string {
  const boot = `import sys;exec(compile(sys.stdin.buffer.read(${code.length}),"dosvob-agent","exec"))`;
  // -I -S: isolated from the droplet's environment and site-packages (also starts ~40 ms faster).
  return `${python} -I -S -c '${boot}'`;
}

export function agentCode(): Buffer {
  return AGENT_BYTES;
}

/**
 * What a transfer runs on the droplet: the exec command and the bytes written to its stdin before the hello. The
 * transfer takes it as a dependency (default `pythonAgent()`), so the code that runs in production has no switch for
 * tests: they pass an agent of their own.
 */
export interface RemoteAgent {
  command: string;
  code: Buffer;
}

export function pythonAgent(): RemoteAgent {
  return { command: agentCommand(), code: AGENT_BYTES };
}
