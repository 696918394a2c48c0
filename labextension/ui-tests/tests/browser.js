// Shared by the browser tests: Debian's chromium, headless, as CI runs it.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Launch /usr/bin/chromium (never a downloaded browser) and open a page. */
export async function launch({
  width = 1400,
  height = 900,
  timeout = 30_000
} = {}) {
  const browser = await chromium.launch({
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
  const page = await browser.newPage({ viewport: { width, height } });
  page.setDefaultTimeout(timeout);
  page.on('pageerror', error => console.error('[page error]', error.message));
  return { browser, page };
}
