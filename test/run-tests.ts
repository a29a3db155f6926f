// `npm test`: one Temporal dev server and one workflow bundle for the whole suite, then node:test
// over every test file. CI may start a server itself and pass TEMPORAL_ADDRESS.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startDevServer, type DevServer } from '../client/temporal-server';

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return name === 'bench' || name === 'histories' ? [] : testFiles(full);
    return name.endsWith('.test.ts') ? [full] : [];
  });
}

async function main(): Promise<number> {
  const root = path.resolve(__dirname);
  const filter = process.argv.slice(2);
  const files = testFiles(root)
    .filter((f) => filter.length === 0 || filter.some((x) => f.includes(x)))
    .sort();
  const work = mkdtempSync(path.join(tmpdir(), 'dosvob-test-'));
  let server: DevServer | undefined;
  try {
    let address = process.env.TEMPORAL_ADDRESS;
    // The web UI of the suite's server, for the browser test (a server given by TEMPORAL_ADDRESS may pass its own).
    let uiUrl = process.env.DOSVOB_TEST_UI_URL;
    if (!address) {
      const started = Date.now();
      server = await startDevServer({ logFile: path.join(work, 'temporal.log') });
      address = server.address;
      uiUrl = server.uiUrl;
      console.log(`# temporal dev server at ${address} (ui ${server.uiUrl}), up in ${Date.now() - started} ms`);
    }
    const bundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('../workflows'),
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error },
    });
    const bundlePath = path.join(work, 'workflow-bundle.js');
    writeFileSync(bundlePath, bundle.code);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--test',
        `--test-concurrency=${process.env.DOSVOB_TEST_CONCURRENCY ?? 2}`,
        // A hung test fails (and says which) instead of stalling CI.
        `--test-timeout=${process.env.DOSVOB_TEST_TIMEOUT_MS ?? 300_000}`,
        ...(process.env.DOSVOB_TEST_NAME_PATTERN
          ? [`--test-name-pattern=${process.env.DOSVOB_TEST_NAME_PATTERN}`]
          : []),
        ...files,
      ],
      {
        stdio: 'inherit',
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: address,
          DOSVOB_TEST_WORKFLOW_BUNDLE: bundlePath,
          DOSVOB_TEST_SERVER_LOG: path.join(work, 'temporal.log'),
          ...(uiUrl ? { DOSVOB_TEST_UI_URL: uiUrl } : {}),
        },
      },
    );
    return await new Promise<number>((resolve) =>
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))),
    );
  } finally {
    await server?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
