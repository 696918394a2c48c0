// Browser test of the jupyter-neo sidebar (node:test + playwright-core).
//
// Drives Debian's /usr/bin/chromium against a `jupyter lab` that is already
// running (tests/test_sidebar_browser.py starts one with the real server
// extension and the local backend; run.sh starts one, or the mock): open the
// panel, reserve 2 nodes through the form, see the reservation become ready,
// see a run started outside the browser (`neo run`, when NEO_CLI is set)
// appear, open a rank's log tail, release the reservation, see it gone.
// Screenshots go to $NEO_ARTIFACTS.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { launch } from './browser.js';

const URL = process.env.NEO_LAB_URL ?? 'http://127.0.0.1:8899';
const TOKEN = process.env.NEO_LAB_TOKEN ?? 'neotest';
const ARTIFACTS = process.env.NEO_ARTIFACTS ?? 'test-artifacts';
const GPUS = process.env.NEO_TEST_GPUS ?? '2';
const NODES = process.env.NEO_TEST_NODES ?? '2';
const CLUSTER = process.env.NEO_TEST_CLUSTER ?? 'cheapest';
const READY_MS = 1000 * Number(process.env.NEO_READY_TIMEOUT_S ?? 180);
// More GPUs than any cluster has, for the refused reservation.
const TOO_MANY = process.env.NEO_TEST_TOO_MANY ?? '4096';
// The `neo` CLI that starts a run from outside the browser (same NEO_HOME as
// the server), and the workspace it syncs; without it the test looks at the
// runs the server already has (the mock's).
const NEO_CLI = process.env.NEO_CLI;
const NEO_WORKSPACE = process.env.NEO_WORKSPACE;
// Where to write the README's screenshot of the panel, when set.
const DOCS_SCREENSHOT = process.env.NEO_DOCS_SCREENSHOT;

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
  ({ browser, page } = await launch());
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

/** The sidebar panel with the tab bar on its left, for the README. */
async function panelShot(file) {
  const box = await page.locator('#jupyter-neo-sidebar').boundingBox();
  await page.screenshot({
    path: file,
    clip: { x: 0, y: box.y, width: box.x + box.width + 1, height: box.height }
  });
}

/** Start `neo run` on a reservation from outside the browser; resolves when it ends. */
function neoRun(reservationId) {
  writeFileSync(
    path.join(NEO_WORKSPACE, 'train.py'),
    [
      'import os, time',
      'node = os.environ.get("NEO_NODE_RANK", "?")',
      'for step in range(1, 6):',
      '    print(f"node {node} step {step}/5 loss {1.0 / step:.3f}", flush=True)',
      '    time.sleep(0.4)',
      'print(f"node {node} done", flush=True)',
      ''
    ].join('\n')
  );
  return promisify(execFile)(
    NEO_CLI,
    ['run', '--reservation', reservationId, '--cmd', 'python3 train.py'],
    { cwd: NEO_WORKSPACE, timeout: 120_000 }
  );
}

test('reserve 2 nodes, see it ready, see a run, release it, see it gone', async () => {
  const rows = page.locator(tid('neo-reservation-row'));
  const before = new Set(
    await rows.evaluateAll(els => els.map(e => e.dataset.reservationId))
  );
  const runsBefore = await page
    .locator(tid('neo-run-row'))
    .evaluateAll(els => els.map(e => e.dataset.runId));

  await page.locator(tid('neo-form-gpus')).fill(GPUS);
  await page.locator(tid('neo-form-nodes')).fill(NODES);
  await page.locator(tid('neo-form-cluster')).selectOption(CLUSTER);
  await page.locator(tid('neo-form-idle-ttl')).fill('30m');
  // The price before committing, from the server's placement.
  const preview = page.locator(tid('neo-form-preview'));
  await preview.waitFor({ timeout: 30_000 });
  assert.match(
    await preview.innerText(),
    /^\d+ \u00d7 \d+ .+ on .+: \$[\d,]+\.\d\d\/h, idle release after 30m \u2248 \$[\d,]+\.\d\d if unused$/
  );
  await screenshot('price-preview');
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
  assert.equal(
    await row.locator(`${tid('neo-pod-dot')}[data-state="ready"]`).count(),
    Number(NODES)
  );
  assert.match(
    await row.locator(tid('neo-reservation-ttl')).innerText(),
    /idle TTL 30m00s/
  );
  // The server agrees with what the row shows.
  const held = await api(`reservations/${reservationId}`);
  assert.equal(held.body.state, 'ready');
  assert.equal(held.body.nodes, Number(NODES));
  await screenshot('ready');

  // A run started outside the browser shows up through the server's events.
  let runId;
  if (NEO_CLI) {
    const finished = neoRun(reservationId);
    const appeared = await page.waitForFunction(
      ([selector, known]) =>
        [...document.querySelectorAll(selector)]
          .map(e => e.dataset.runId)
          .find(i => !known.includes(i)) ?? false,
      [tid('neo-run-row'), runsBefore],
      { timeout: 60_000 }
    );
    runId = await appeared.jsonValue();
    const { stdout } = await finished;
    assert.match(stdout, /node 0 done/);
    await page
      .locator(
        `${tid('neo-run-row')}[data-run-id="${runId}"][data-state="succeeded"]`
      )
      .waitFor({ timeout: 60_000 });
    const run = await api(`runs/${runId}`);
    assert.equal(run.body.reservation, reservationId);
    assert.equal(run.body.state, 'succeeded');
  } else {
    runId = runsBefore[0];
    assert.ok(runId, 'no NEO_CLI to start a run and no runs on the server');
  }
  const runRow = page.locator(`${tid('neo-run-row')}[data-run-id="${runId}"]`);
  if (NEO_CLI) {
    assert.match(
      await runRow.locator(tid('neo-run-exit-code')).innerText(),
      /exit 0/
    );
  }

  // Open the log tail of the last rank.
  await runRow.locator('[role="button"]').click();
  const lines = runRow.locator(tid('neo-run-log-lines'));
  await lines.waitFor();
  const lastRank = Number(NODES) - 1;
  if (NEO_CLI) {
    await runRow.locator(tid('neo-run-rank')).selectOption(String(lastRank));
    await page.waitForFunction(
      ([sel, text]) => document.querySelector(sel)?.textContent?.includes(text),
      [tid('neo-run-log-lines'), `node ${lastRank} done`],
      { timeout: 30_000 }
    );
    const logs = await api(`runs/${runId}/logs?rank=${lastRank}&tail=50`);
    assert.ok(
      logs.body.lines.some(l => l.includes(`node ${lastRank} step 5/5`))
    );
  } else {
    await page.waitForFunction(
      sel => !document.querySelector(sel)?.textContent?.startsWith('Loading'),
      tid('neo-run-log-lines')
    );
  }
  await screenshot('run-logs');
  if (DOCS_SCREENSHOT) {
    await panelShot(DOCS_SCREENSHOT);
  }

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
