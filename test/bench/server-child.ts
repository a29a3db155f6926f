// Bench helper: the "droplet" SSH server in its own process (so its CPU and memory, and those of the python agents
// it runs, are measured apart from the client). Exits when its stdin closes.
import { ExecSshServer } from '../support/exec-ssh-server.js';

async function main(): Promise<void> {
  const [host = '127.0.0.1', hostKeyB64 = '', clientPubB64 = ''] = process.argv.slice(2);
  const server = new ExecSshServer({
    host,
    port: 0,
    hostKey: Buffer.from(hostKeyB64, 'base64'),
    authorizedKeys: () => [Buffer.from(clientPubB64, 'base64').toString('utf8')],
    killProcessGroup: true,
  });
  const { port } = await server.listen();
  process.stdout.write(`${port}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    void server.close().then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
