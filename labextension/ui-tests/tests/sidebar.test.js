// Browser test of the jupyter-neo sidebar (node:test + playwright-core).
//
// Drives Debian's /usr/bin/chromium against a `jupyter lab` that run.sh has
// started: open the panel, reserve 2 nodes through the form, see the
// reservation become ready, release it, see it gone. Screenshots go to
// $NEO_ARTIFACTS.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

const URL = process.env.NEO_LAB_URL ?? 'http://127.0.0.1:8899';
const TOKEN = process.env.NEO_LAB_TOKEN ?? 'neotest';
const ARTIFACTS = process.env.NEO_ARTIFACTS ?? 'test-artifacts';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const GPUS = process.env.NEO_TEST_GPUS ?? '2';
const NODES = process.env.NEO_TEST_NODES ?? '2';
const CLUSTER = process.env.NEO_TEST_CLUSTER ?? 'cheapest';
const READY_MS = 1000 * Number(process.env.NEO_READY_TIMEOUT_S ?? 180);
// More GPUs than any cluster has, for the refused reservation.
const TOO_MANY = process.env.NEO_TEST_TOO_MANY ?? '4096';

const tid = id => `[data-testid="${id}"]`;

let browser;
let page;
let shot = 0;

async function screenshot(name) {
  shot += 1;
  const file = path.join(
    ARTIFACTS,
    `${String(shot).padStart(2, '0')}-${name}.png`
  );
  await page.screenshot({ path: file });
  return file;
}

/** GET a REST endpoint of the server extension with the token. */
async function api(endPoint) {
  const response = await fetch(`${URL}/jupyter-neo/${endPoint}`, {
    headers: { Authorization: `token ${TOKEN}` }
  });
  return { status: response.status, body: await response.json() };
}

async function waitForServer(timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${URL}/api/status`, {
        headers: { Authorization: `token ${TOKEN}` }
      });
      if (r.ok) {
        return;
      }
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      throw new Error(
        `jupyter lab did not answer at ${URL} within ${timeoutMs} ms`
      );
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  await waitForServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run'
    ]
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(30_000);
  page.on('pageerror', error => console.error('[page error]', error.message));
  await page.goto(`${URL}/lab?token=${TOKEN}`);
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
});

after(async () => {
  await browser?.close();
});

test('the sidebar opens and lists clusters', async () => {
  // The layout restorer may have opened it already: a blind click would close it.
  const panel = page.locator('#jupyter-neo-sidebar');
  if (!(await panel.isVisible())) {
    await page.locator('li[data-id="jupyter-neo-sidebar"]').click();
  }
  await page.locator(tid('neo-reserve-form')).waitFor();
  await page.locator(tid('neo-cluster-row')).first().waitFor();
  assert.ok((await page.locator(tid('neo-cluster-row')).count()) >= 1);
  await screenshot('panel');
});

test('the form shows validation messages inline', async () => {
  await page.locator(tid('neo-form-gpus')).fill('0');
  await page.locator(tid('neo-form-submit')).click();
  const error = page.locator(tid('neo-form-error-gpus'));
  await error.waitFor();
  assert.match(await error.innerText(), /at least 1/);
  await screenshot('validation');
});

test('reserve 2 nodes, see it ready, release it, see it gone', async () => {
  const rows = page.locator(tid('neo-reservation-row'));
  const before = new Set(
    await rows.evaluateAll(els => els.map(e => e.dataset.reservationId))
  );

  await page.locator(tid('neo-form-gpus')).fill(GPUS);
  await page.locator(tid('neo-form-nodes')).fill(NODES);
  await page.locator(tid('neo-form-cluster')).selectOption(CLUSTER);
  await page.locator(tid('neo-form-idle-ttl')).fill('30m');
  await page.locator(tid('neo-form-submit')).click();

  // The new row appears (pending or already ready).
  const id = await page.waitForFunction(
    ([selector, known]) => {
      const ids = [...document.querySelectorAll(selector)].map(
        e => e.dataset.reservationId
      );
      const error = document.querySelector('[data-testid="neo-form-error"]');
      if (error) {
        throw new Error(`reserve failed: ${error.textContent}`);
      }
      return ids.find(i => !known.includes(i)) ?? false;
    },
    [tid('neo-reservation-row'), [...before]],
    { timeout: 60_000 }
  );
  const reservationId = await id.jsonValue();
  const row = page.locator(
    `${tid('neo-reservation-row')}[data-reservation-id="${reservationId}"]`
  );
  await screenshot('reserved');

  await page
    .locator(
      `${tid('neo-reservation-row')}[data-reservation-id="${reservationId}"][data-state="ready"]`
    )
    .waitFor({ timeout: READY_MS });
  assert.equal(await row.locator(tid('neo-pod-dot')).count(), Number(NODES));
  await screenshot('ready');

  await row.locator(tid('neo-reservation-release')).click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor();
  await screenshot('confirm-release');
  await dialog.locator('button.jp-mod-accept').click();

  await row.waitFor({ state: 'detached', timeout: 60_000 });
  await screenshot('released');

  const { status, body } = await api(`reservations/${reservationId}`);
  assert.equal(status, 200);
  assert.equal(body.state, 'released');
});

test('a refused reservation shows the server message inline', async () => {
  await page.locator(tid('neo-form-gpus')).fill(TOO_MANY);
  await page.locator(tid('neo-form-nodes')).fill('');
  await page.locator(tid('neo-form-submit')).click();
  const error = page.locator(tid('neo-form-error'));
  await error.waitFor();
  assert.ok((await error.innerText()).length > 0);
  await screenshot('refused');
});

/** Run a command through the command palette by its label. */
async function palette(label) {
  // Start from a neutral focus, as a user reaching for the keyboard would.
  await page.evaluate(() => document.activeElement?.blur());
  await page.keyboard.press('Control+Shift+C');
  const input = page.locator('.lm-CommandPalette-input');
  await input.waitFor();
  await input.fill(label);
  await page
    .locator('.lm-CommandPalette-item', { hasText: label })
    .first()
    .click();
}

test('palette: Reserve GPUs focuses the form', async () => {
  await palette('Reserve GPUs');
  await page.waitForFunction(
    () => document.activeElement?.dataset?.testid === 'neo-form-gpus'
  );
});

test('palette: Release all reservations', async () => {
  await page.locator(tid('neo-form-gpus')).fill(GPUS);
  await page.locator(tid('neo-form-nodes')).fill(NODES);
  await page.locator(tid('neo-form-submit')).click();
  await page.locator(tid('neo-reservation-row')).first().waitFor();
  await screenshot('before-release-all');

  await palette('Release all reservations');
  const dialog = page.locator('.jp-Dialog');
  await dialog.waitFor();
  await dialog.locator('button.jp-mod-accept').click();
  await page.locator(tid('neo-no-reservations')).waitFor({ timeout: 60_000 });
  await screenshot('released-all');
});

test('a run opens its log tail', async () => {
  const run = page.locator(tid('neo-run-row')).first();
  if ((await run.count()) === 0) {
    test.skip('no runs on this server');
    return;
  }
  await run.locator('[role="button"]').click();
  await run.locator(tid('neo-run-log-lines')).waitFor();
  await page.waitForFunction(
    sel => !document.querySelector(sel)?.textContent?.startsWith('Loading'),
    tid('neo-run-log-lines')
  );
  await screenshot('run-logs');
});
