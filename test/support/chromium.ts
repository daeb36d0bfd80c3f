// Opens HTML files in Debian's chromium (headless, through playwright-core) and reports every
// console error, page error, dialog and request that is not for the file itself: a self-contained
// report makes none. Screenshots go to the test's output directory under .tmp (never the repo).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Page } from 'playwright-core';

export const CHROMIUM = process.env.DATAGRANT_CHROMIUM ?? '/usr/bin/chromium';

/** Where a test's screenshots and rendered files go: .tmp/test-output/<name>/ in the checkout. */
export function testOutputDir(name: string): string {
  const dir = resolve(import.meta.dirname, '../../.tmp/test-output', name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface OpenedPage {
  page: Page;
  /** Console errors, page errors, dialogs, and requests for anything but the file itself. */
  problems: string[];
}

export interface Chromium {
  open(file: string): Promise<OpenedPage>;
  close(): Promise<void>;
}

/** Starts Debian's chromium; a missing one is an error naming how to install it, never a skip. */
export async function startChromium(): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Debian's chromium is not at ${CHROMIUM}: run scripts/ensure-chromium.sh (apt-get install chromium), or set DATAGRANT_CHROMIUM`);
  }
  // A fresh profile per run; the machine has no internet, so nothing may try to reach it.
  const profile = mkdtempSync(join(tmpdir(), 'dg-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const pages: Page[] = [];
  return {
    async open(file) {
      const page = await browser.newPage();
      pages.push(page);
      const problems: string[] = [];
      const url = pathToFileURL(file).href;
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('dialog', (d) => {
        problems.push(`dialog: ${d.message()}`);
        void d.dismiss();
      });
      page.on('request', (r) => {
        if (r.url() !== url) problems.push(`request: ${r.url()}`);
      });
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
      const res = await page.goto(url, { waitUntil: 'load' });
      if (!res) problems.push(`no response for ${url}`);
      return { page, problems };
    },
    async close() {
      for (const p of pages) await p.close().catch(() => undefined);
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
