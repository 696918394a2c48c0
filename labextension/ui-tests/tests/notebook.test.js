// Browser test of the %neo run widget (node:test + playwright-core).
//
// Against a real `jupyter lab` with the server extension on the local
// backend (tests/test_sidebar_browser.py starts it and sets NEO_NOTEBOOK_DIR
// to its root, where the kernel works): a notebook runs `%neo run` cells in a
// real kernel while Chromium clicks the widget. Checked: the widget says it
// reserved a new gang; Stop clicked while the cell blocks ends every rank
// within 2 s (read from the process table); the rank selector switches
// during and after the run; a failing rank 3 is shown first with its
// exception; a hot iteration with a syntax error says it was not applied;
// the sidebar lists the newest run first. Screenshots go to $NEO_ARTIFACTS.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launch } from './browser.js';

const URL = process.env.NEO_LAB_URL ?? 'http://127.0.0.1:8899';
const TOKEN = process.env.NEO_LAB_TOKEN ?? 'neotest';
const ARTIFACTS = process.env.NEO_ARTIFACTS ?? 'test-artifacts';
const DIR = process.env.NEO_NOTEBOOK_DIR;
const NOTEBOOK = 'neo-widget.ipynb';
const DOCS_DIR = process.env.NEO_DOCS_DIR;

const tid = id => `[data-testid="${id}"]`;
let browser;
let page;

const SCRIPTS = {
  'steps.py': [
    'import os, time',
    'from jupyter_neo import log',
    'rank = int(os.environ["RANK"])',
    'for step in range(1, 100000):',
    '    print(f"rank {rank} step {step}", flush=True)',
    '    log(step=step, loss=1.0 / step + 0.01 * rank)',
    '    time.sleep(0.2)',
    ''
  ],
  'fail3.py': [
    'import os, time',
    'rank = int(os.environ["RANK"])',
    'print(f"rank {rank} up", flush=True)',
    'time.sleep(1.5)',
    'if rank == 3:',
    '    raise ValueError("rank 3 exploded on purpose")',
    'time.sleep(60)',
    ''
  ],
  'hot_step.py': [
    'import os',
    'print("generation A on rank", os.environ["RANK"], flush=True)',
    ''
  ]
};

/**
 * Processes whose command line mentions `needle`: `ranks` are the rank
 * processes themselves, `launchers` the torchrun processes starting them.
 */
function processes(needle) {
  const out = { ranks: [], launchers: [] };
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) {
      continue;
    }
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      if (cmd.includes(needle)) {
        (cmd.includes('torch.distributed.run')
          ? out.launchers
          : out.ranks
        ).push(Number(pid));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function shot(name, locator) {
  const file = path.join(ARTIFACTS, `nb-${name}.png`);
  await (locator ?? page).screenshot({ path: file });
  return file;
}

async function api(method, endPoint, body) {
  const response = await fetch(`${URL}/${endPoint}`, {
    method,
    headers: { Authorization: `token ${TOKEN}` },
    body: body === undefined ? undefined : JSON.stringify(body)
  });
  return { status: response.status, body: await response.json() };
}

const cells = () => page.locator('.jp-Notebook .jp-Cell');

/** Type `code` into cell `i` (appending cells as needed) and run it. */
async function execute(i, code) {
  while ((await cells().count()) <= i) {
    await page.keyboard.press('Escape');
    await cells()
      .last()
      .click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('b');
  }
  const editor = cells().nth(i).locator('.jp-InputArea-editor');
  await editor.click();
  await page.keyboard.press('Control+a');
  await page.keyboard.insertText(code);
  await page.keyboard.press('Shift+Enter');
}

/** Wait until cell `i` finished ([n] rather than [*] in its prompt). */
async function finished(i, timeout = 120_000) {
  await page
    .waitForFunction(
      i => {
        const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
        const prompt =
          cell?.querySelector('.jp-InputPrompt')?.textContent ?? '';
        return /\[\d+\]/.test(prompt);
      },
      i,
      { timeout }
    )
    .catch(async error => {
      await shot(`timeout-cell-${i}-after-${timeout}ms`);
      throw error;
    });
}

/**
 * JupyterLab may ask which kernel to start (a new notebook): take the
 * preferred one, then wait until the kernel is idle.
 */
async function kernelReady(timeout = 120_000) {
  const deadline = Date.now() + timeout;
  const dialog = page.locator('.jp-Dialog');
  for (;;) {
    if (await dialog.isVisible()) {
      await dialog.locator('button.jp-mod-accept').click();
    } else if (
      /Idle/.test(
        (await page
          .locator('#jp-main-statusbar')
          .innerText()
          .catch(() => '')) ?? ''
      )
    ) {
      return;
    }
    if (Date.now() > deadline) {
      await shot('kernel-not-ready');
      throw new Error('the kernel did not become idle');
    }
    await new Promise(resolve => setTimeout(resolve, 250));
  }
}

function widgetOf(i) {
  return cells().nth(i).locator(tid('neo-run-widget'));
}

async function logText(widget) {
  return (await widget.locator(tid('neo-run-log-lines')).innerText()).trim();
}

/** Waits until cell `i` has finished and its run widget says `state`; returns the widget. */
async function settled(i, state, timeout) {
  await finished(i, timeout);
  const widget = widgetOf(i);
  await widget
    .locator(`${tid('neo-run-widget-state')}:text("${state}")`)
    .waitFor();
  return widget;
}

/** Waits until `widget`'s log pane shows `text` (string or RegExp): the tail is polled, so lines come late. */
async function logShows(widget, text, timeout = 30_000) {
  await widget
    .locator(tid('neo-run-log-lines'))
    .filter({ hasText: text })
    .waitFor({ timeout });
}

before(async () => {
  assert.ok(DIR, 'NEO_NOTEBOOK_DIR: where the kernel works');
  for (const [name, lines] of Object.entries(SCRIPTS)) {
    writeFileSync(path.join(DIR, name), lines.join('\n'));
  }
  const nb = {
    cells: [],
    metadata: {
      kernelspec: {
        name: 'python3',
        display_name: 'Python 3',
        language: 'python'
      }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  const put = await api('PUT', `api/contents/${NOTEBOOK}`, {
    type: 'notebook',
    format: 'json',
    content: nb
  });
  assert.ok(put.status < 300, JSON.stringify(put.body));
  ({ browser, page } = await launch({ height: 1000, timeout: 60_000 }));
  await page.goto(`${URL}/lab/tree/${NOTEBOOK}?token=${TOKEN}`);
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  await cells().first().waitFor();
  await kernelReady();
  // The first execution can be lost while JupyterLab settles the kernel it chose: run the
  // harmless first cell again until the kernel takes it.
  await execute(
    0,
    '%load_ext jupyter_neo\nimport os\nprint("kernel in", os.getcwd())'
  );
  for (let attempt = 0; ; attempt++) {
    try {
      await finished(0, 20_000);
      break;
    } catch (error) {
      if (attempt === 5) {
        throw error;
      }
      await kernelReady();
      await cells().nth(0).locator('.jp-InputArea-editor').click();
      await page.keyboard.press('Shift+Enter');
    }
  }
});

after(async () => {
  await browser?.close();
});

test('Stop in the widget stops every rank while the cell blocks; ranks switch during and after', async () => {
  await execute(1, 'r = %neo run --gpus 4 --nodes 2 steps.py');
  const widget = widgetOf(1);
  await widget.waitFor({ timeout: 60_000 });
  // No silent spending: the gang reserved for this run says what it costs.
  const notice = widget.locator(tid('neo-run-widget-notice'));
  await notice.waitFor({ timeout: 120_000 });
  assert.match(
    await notice.innerText(),
    /reserved a new gang r-.*\$\d+\.\d\d\/h.*%neo release/
  );

  // During the run: rank 2's own lines, through the selector.
  await logShows(widget, 'step', 120_000);
  await widget.locator(tid('neo-run-rank')).selectOption('2');
  await logShows(widget, /rank 2 step \d+/);
  assert.doesNotMatch(await logText(widget), /rank [013] step/);
  // The training curve (jupyter_neo.log on every rank) sits under the log pane.
  await cells()
    .nth(1)
    .locator('.jp-neo-runwidget-extra svg')
    .first()
    .waitFor({ timeout: 60_000 });
  await shot('widget-running', cells().nth(1));
  if (DOCS_DIR) {
    await cells()
      .nth(1)
      .screenshot({ path: path.join(DOCS_DIR, 'widget-running.png') });
  }
  const running = processes('steps.py');
  assert.equal(running.ranks.length, 4, 'every rank runs');
  assert.equal(running.launchers.length, 2, 'one launcher per node');

  // Stop while the cell blocks: the browser asks the server, not the kernel.
  const t0 = Date.now();
  await widget.locator(tid('neo-run-widget-stop')).click();
  let left = processes('steps.py');
  while (left.ranks.length && Date.now() - t0 < 10_000) {
    await new Promise(resolve => setTimeout(resolve, 20));
    left = processes('steps.py');
  }
  const ranksGone = Date.now() - t0;
  assert.deepEqual(left.ranks, [], 'no rank process survives');
  // torchrun itself may take its grace period to exit; then nothing is left.
  while (left.launchers.length && Date.now() - t0 < 15_000) {
    await new Promise(resolve => setTimeout(resolve, 50));
    left = processes('steps.py');
  }
  const allGone = Date.now() - t0;
  console.log(`ranks gone ${ranksGone} ms, launchers ${allGone} ms after Stop`);
  assert.deepEqual(left.launchers, [], 'no launcher survives');
  assert.ok(ranksGone < 2000, `ranks gone after ${ranksGone} ms (limit 2000)`);

  await settled(1, 'stopped', 60_000);
  assert.equal(
    await widget.locator(tid('neo-run-widget-stop')).count(),
    0,
    'no Stop on a finished run'
  );
  assert.match(
    await widget.locator(tid('neo-run-widget-error')).innerText(),
    /stopped on request; every rank was stopped/
  );

  // After the run: another rank's lines.
  await widget.locator(tid('neo-run-rank')).selectOption('3');
  await logShows(widget, /rank 3 step \d+/);
  const runId = await widget.getAttribute('data-run-id');
  const run = await api('GET', `jupyter-neo/runs/${runId}`);
  assert.equal(run.body.state, 'stopped');
  assert.equal(run.body.exit_code, 130);
});

test('a failing rank 3 is shown first, with its exception', async () => {
  await execute(2, 'f = %neo run -r {r.reservation} fail3.py');
  const widget = await settled(2, 'failed', 180_000);
  assert.equal(await widget.locator(tid('neo-run-rank')).inputValue(), '3');
  await logShows(widget, 'ValueError: rank 3 exploded on purpose');
  assert.match(
    await widget.locator(tid('neo-run-widget-error')).innerText(),
    /rank 3/
  );
  await shot('widget-failed', cells().nth(2));
  if (DOCS_DIR) {
    await cells()
      .nth(2)
      .screenshot({ path: path.join(DOCS_DIR, 'widget-failed.png') });
  }
});

test('a hot iteration with a syntax error says it was not applied', async () => {
  await execute(3, 'h = %neo run --hot -r {r.reservation} hot_step.py');
  await settled(3, 'succeeded', 240_000);
  writeFileSync(
    path.join(DIR, 'hot_step.py'),
    'import os\nprint("generation B on rank", os.environ["RANK"]\n'
  );
  await execute(4, 'h2 = %neo run --hot -r {r.reservation} hot_step.py');
  const widget = await settled(4, 'not applied', 240_000);
  const why = await widget.locator(tid('neo-run-widget-error')).innerText();
  assert.match(
    why,
    /not applied: syntax error at hot_step\.py:2 .* ranks still run generation 1/
  );
  await shot('widget-not-applied', cells().nth(4));

  // %neo logs of that run prints the reason.
  await execute(5, '%neo logs {h2.id}');
  await finished(5, 60_000);
  assert.match(
    await cells().nth(5).locator('.jp-OutputArea').innerText(),
    /not applied: syntax error/
  );
});

test('the sidebar lists the newest run first', async () => {
  const panel = page.locator('#jupyter-neo-sidebar');
  if (!(await panel.isVisible())) {
    await page.locator('li[data-id="jupyter-neo-sidebar"]').click();
  }
  const runs = await api('GET', 'jupyter-neo/runs');
  const newest = runs.body.runs
    .map(r => r.id)
    .sort()
    .at(-1);
  await page.waitForFunction(
    ([sel, id]) => document.querySelector(sel)?.dataset.runId === id,
    [tid('neo-run-row'), newest],
    { timeout: 30_000 }
  );
  // The training run (jupyter_neo.log) shows its last loss and a sparkline in its row.
  const trained = runs.body.runs.find(r => (r.metrics ?? []).length > 0);
  assert.ok(trained, 'a run with metrics is listed');
  const metric = panel.locator(
    `[data-run-id="${trained.id}"] ${tid('neo-run-metric')}`
  );
  await metric.waitFor({ timeout: 30_000 });
  assert.match(await metric.textContent(), /^loss \d/);
  assert.ok(await metric.locator('svg path').count(), 'the sparkline is drawn');
  await metric.scrollIntoViewIfNeeded();
  await shot(
    'sidebar-run-metric',
    panel.locator(`[data-run-id="${trained.id}"]`)
  );
  await shot('sidebar-newest-first');
  // Give the gang back (the notebook's way).
  await execute(6, '%neo release');
  await finished(6, 60_000);
});
