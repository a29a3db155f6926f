// Standalone simulator: npm run simulator -- --port 8080 --data /tmp/dosim [--token T] [--ssh-port 22]
//   [--seed N] [--action-delay-ms N] [--droplet-active-delay-ms N] [--snapshot-interval-ms N]
import { parseArgs } from 'node:util';
import { startSimulator } from './index';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      data: { type: 'string' },
      token: { type: 'string', multiple: true },
      'ssh-port': { type: 'string' },
      seed: { type: 'string' },
      'action-delay-ms': { type: 'string' },
      'droplet-active-delay-ms': { type: 'string' },
      'snapshot-interval-ms': { type: 'string' },
    },
  });
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  const sim = await startSimulator({
    host: values.host,
    port: num(values.port),
    dataDir: values.data,
    tokens: values.token,
    sshPort: num(values['ssh-port']),
    seed: num(values.seed),
    actionDelayMs: num(values['action-delay-ms']),
    dropletActiveDelayMs: num(values['droplet-active-delay-ms']),
    snapshotIntervalMs: num(values['snapshot-interval-ms']),
  });
  process.stdout.write(`DIGITALOCEAN_API_URL=${sim.apiUrl}\nDIGITALOCEAN_TOKEN=${sim.token}\n`);
  process.stdout.write(`# data dir ${sim.dataDir}; droplets' SSH on port ${sim.options.sshPort}; Ctrl-C stops\n`);
  const stop = (): void => {
    void sim.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
