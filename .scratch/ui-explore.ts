import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { chromium } from 'playwright-core';
import { startDevServer } from '../client/temporal-server';

async function main() {
  const server = await startDevServer({});
  process.env.TEMPORAL_ADDRESS = server.address;
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows') });
  const work = mkdtempSync(path.join(tmpdir(), 'scr-'));
  writeFileSync(path.join(work, 'b.js'), bundle.code);
  process.env.DOSVOB_TEST_WORKFLOW_BUNDLE = path.join(work, 'b.js');
  const { startHarness } = await import('../test/support/harness');
  const h = await startHarness({ sim: { actionDelayMs: 0, dropletActiveDelayMs: 0 } });
  await h.sim.createVolume({ name: 'db-data', region: 'nyc3', sizeGigabytes: 1 });
  const handle = await h.client.workflow.start('backupWorkflow', {
    taskQueue: h.taskQueue, workflowId: 'wf-ui-1',
    args: [{ singletonId: 'wf-ui-1' }],
    staticSummary: 'dosvob backup of nyc3',
  });
  const t0 = Date.now();
  console.log(await handle.result().then(r => JSON.stringify(r).slice(0, 200)));
  console.log('run took', Date.now() - t0);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
  const page = await browser.newPage();
  const url = `${server.uiUrl}/namespaces/default/workflows/wf-ui-1/${(await handle.describe()).runId}/history`;
  console.log(url);
  await page.goto(url);
  await page.waitForTimeout(4000);
  await page.screenshot({ path: '/tmp/ui1.png', fullPage: true });
  writeFileSync('/tmp/ui1.html', await page.content());
  console.log((await page.innerText('body')).slice(0, 3000));
  await page.getByText('User Metadata').click();
  await page.waitForTimeout(2000);
  console.log('URL', page.url());
  await page.screenshot({ path: '/tmp/ui3.png', fullPage: true });
  writeFileSync('/tmp/ui3.html', await page.content());
  await page.getByText('Search Attributes').first().click();
  await page.waitForTimeout(2000);
  console.log('URL', page.url());
  await page.screenshot({ path: '/tmp/ui4.png', fullPage: true });
  await page.goto(`${server.uiUrl}/namespaces/default/workflows`);
  await page.waitForTimeout(3000);
  await page.screenshot({ path: '/tmp/ui2.png', fullPage: true });
  console.log((await page.innerText('body')).slice(0, 2000));
  await browser.close();
  await h.close();
  await server.stop();
}
main().catch((e) => { console.error(e); process.exit(1); });
