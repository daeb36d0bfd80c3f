// The access report and review evidence open in a real browser (Debian's chromium, headless)
// without a console error, a page error or a request for anything but the file itself, even with
// hostile names in them; their tables show every row and their stylesheet applies under the page's
// Content-Security-Policy. Screenshots (screen and print) land in .tmp/test-output/html-chromium/.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { renderAccessHtml, renderReviewHtml } from '../../src/render/html.js';
import { startChromium, testOutputDir, type Chromium } from '../support/chromium.js';
import { HOSTILE, hostileEvidence, hostileReport } from '../support/review-fixture.js';

const out = testOutputDir('html-chromium');
let browser: Chromium;
beforeAll(async () => {
  browser = await startChromium();
});
afterAll(async () => {
  await browser?.close();
});

const cases = [
  { name: 'access', html: () => renderAccessHtml(hostileReport()), rows: hostileReport().rows.length, table: 'table.access' },
  { name: 'review', html: () => renderReviewHtml(hostileEvidence()), rows: hostileEvidence().rows.length, table: 'table.review' },
];

describe('HTML in headless chromium', () => {
  test.each(cases)('$name: opens cleanly, shows every row, and its stylesheet applies', async ({ name, html, rows, table }) => {
    const file = join(out, `${name}.html`);
    writeFileSync(file, html());
    const { page, problems } = await browser.open(file);
    expect(await page.locator(`${table} tbody tr[data-row]`).count()).toBe(rows);
    // The hostile name is shown as text, not run: no dialog opened, no extra element exists.
    expect(await page.locator(`${table} tbody`).innerText()).toContain(HOSTILE);
    expect(await page.locator('script, img, svg, iframe, link, object').count()).toBe(0);
    // A stylesheet the policy refused would leave the badges unstyled (and log a console error).
    const badge = await page
      .locator('.badge')
      .first()
      .evaluate((el) => getComputedStyle(el).borderRadius);
    expect(badge).toBe('10px');
    await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
    await page.emulateMedia({ media: 'print' });
    await page.screenshot({ path: join(out, `${name}-print.png`), fullPage: true });
    expect(problems).toEqual([]);
    for (const shot of [`${name}.png`, `${name}-print.png`]) {
      expect(existsSync(join(out, shot))).toBe(true);
      expect(statSync(join(out, shot)).size).toBeGreaterThan(10_000);
    }
  });

  test('a page that does load something is caught (the check can fail)', async () => {
    const file = join(out, 'negative.html');
    writeFileSync(file, '<!doctype html><title>x</title><img src="http://127.0.0.1:9/x.png"><script>console.error("boom")</script>');
    const { problems } = await browser.open(file);
    expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(/^request: http:\/\/127\.0\.0\.1:9\/x\.png/), 'console error: boom']));
  });
});
