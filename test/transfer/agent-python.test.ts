// The python agent's own unit tests (test/transfer/agent_test.py, standard library unittest), run as part of
// `npm test`, through the exact bootstrap command the transfer runs on the droplet.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { agentCommand } from '../../activities/transfer/agent.js';

void test("the python agent's unittest suite passes", async (t) => {
  const args = ['-m', 'unittest', 'discover', '-v', '-s', __dirname, '-p', 'agent_test.py'];
  const child = spawn('python3', args, {
    env: { ...process.env, DOSVOB_AGENT_COMMAND: agentCommand() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const ran = /^Ran (\d+) tests? in/m.exec(output);
  t.diagnostic(`python3 unittest: ${ran ? `${ran[1]} tests` : 'no count reported'}, exit ${code}`);
  assert.equal(code, 0, output);
  assert.ok(ran && Number(ran[1]) > 0, `no python tests ran:\n${output}`);
  assert.match(output, /^OK/m, output);
});
