// Standalone simulator: npm run simulator -- --port 8080 --data /tmp/dosim [--token T] [--ssh-port 22]
//   [--seed N] [--action-delay-ms N] [--droplet-active-delay-ms N] [--snapshot-interval-ms N]
//   [--profile realistic [--time-scale 0.1]] [--rate-limit-per-minute N]
import { parseArgs } from 'node:util';
import { startSimulator } from './index';
import { PROFILES, isProfileName } from './profiles';

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
      profile: { type: 'string' },
      'time-scale': { type: 'string' },
      'rate-limit-per-minute': { type: 'string' },
    },
  });
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  if (values.profile !== undefined && !isProfileName(values.profile)) {
    throw new Error(`--profile: no profile "${values.profile}" (known: ${Object.keys(PROFILES).join(', ')})`);
  }
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
    profile: values.profile,
    timeScale: num(values['time-scale']),
    rateLimitPerMinute: num(values['rate-limit-per-minute']),
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
