// The web console in a real browser (Debian's chromium through playwright-core), against a real
// serve on moto with IAM enforcement and PostgreSQL, signing in through a real local OpenID
// provider: alice asks for read on a dataset, bob (its approver) approves, and alice's issued key
// reads the dataset — until the request ends (an injected clock), when it is refused; a denied
// request grants nothing. Every page is checked with axe-core (no serious or critical violation,
// light and dark), shows no console error (a CSP violation is one), works from the keyboard and
// fits a phone's width. Screenshots of each page go to .tmp/test-output/console/.
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContextOptions, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { CHROMIUM, testOutputDir } from '../support/chromium.js';
import { expectAccessDenied } from '../support/moto.js';
import { adminQuery, pgFixture, urlFor } from '../support/pg.js';
import { canRead, cannotTouch, cannotWrite, keyIsDead, keyRefused, s3For } from './aws-support.js';
import { ADMIN_TOKEN, startConsoleRig, type ConsoleRig } from './console-rig.js';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const fx = pgFixture('console');
const etl = fx.name('etl');
let db: string;
let rig: ConsoleRig;
let browser: Browser;
const out = testOutputDir('console');
/** Console errors, page errors and failed requests of every page opened, by page. */
const problems: string[] = [];

beforeAll(async () => {
  db = await fx.database('warehouse');
  await adminQuery(db, 'CREATE SCHEMA features; CREATE TABLE features.f (id int)');
  rig = await startConsoleRig({
    accounts: {
      alice: { sub: 'u-alice', email: 'alice@example.com' },
      bob: { sub: 'u-bob', email: 'bob@example.com' },
    },
    env: { WAREHOUSE_URL: urlFor(db) },
    spec: (issuer) => `version: 1
settings:
  oidc: [{ name: corp, issuer: "${issuer}", audience: datagrant }]
  console: { oidc: corp, clientId: datagrant-console }
  requests: { maxDuration: 7d }
backends:
  aws: { type: aws }
  warehouse: { type: postgres, url: "\${WAREHOUSE_URL}", scope: ${fx.run} }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/, description: "Training shards", approvers: { principals: [bob] } }
  evaluation: { backend: aws, bucket: ai-model-data, prefix: eval/, approvers: { principals: [bob] } }
  features: { backend: warehouse, database: ${db}, schema: features }
principals:
  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com, grants: [{ dataset: evaluation, access: read, expires: "2099-01-01" }] }
  ${etl}: { type: service, grants: [{ dataset: features, access: write }, { dataset: training, access: read }] }
`,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await rig?.close();
  await fx.cleanup();
});

async function open(options: BrowserContextOptions = {}): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options });
  const page = await context.newPage();
  // The console's pages only: the test provider's login page is not ours to judge.
  const ours = () => page.url().startsWith(rig.base);
  page.on('console', (m) => {
    if (ours() && (m.type() === 'error' || m.type() === 'warning')) problems.push(`${page.url()}: console ${m.type()}: ${m.text()} ${m.location().url}`);
  });
  page.on('pageerror', (e) => problems.push(`${page.url()}: page error: ${e.message}`));
  // A request the browser cancels because the test navigated on (the favicon, often) is no
  // failure of the console's; any other failure is.
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText ?? '';
    if (why !== 'net::ERR_ABORTED') problems.push(`${page.url()}: request failed: ${r.url()} ${why}`);
  });
  return page;
}

/** Signs `login` in through the provider's own login page. */
async function signIn(login: string, options: BrowserContextOptions = {}): Promise<Page> {
  const page = await open(options);
  await page.goto(`${rig.base}/ui`);
  expect(new URL(page.url()).pathname).toBe('/ui/signin');
  await page.getByRole('link', { name: 'Sign in with corp' }).click();
  await page.getByLabel('Username').fill(login);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${rig.base}/ui`);
  await expect.poll(() => page.getByText(`Signed in as ${login}`).count()).toBe(1);
  return page;
}

async function signInOperator(): Promise<Page> {
  const page = await open();
  await page.goto(`${rig.base}/ui/signin`);
  await page.getByText('Operator sign-in').click();
  await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in as operator' }).click();
  await page.waitForURL(`${rig.base}/ui`);
  return page;
}

/** axe-core's serious and critical violations on the page as it is now. */
async function axe(page: Page): Promise<string[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(readFileSync(AXE, 'utf8'));
  const result = await page.evaluate(async () => {
    const w = window as unknown as {
      axe: { run(ctx: Document, o: object): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> };
    };
    return w.axe.run(document, { resultTypes: ['violations'] });
  });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

/** A screenshot of the whole page, and axe-core's verdict on it. */
async function look(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
  expect(await axe(page), `${name}: axe-core`).toEqual([]);
}

async function exportedKey(name: string) {
  const j = JSON.parse(await rig.cli('credentials', 'export', name, '--format', 'json')) as { AccessKeyId: string; SecretAccessKey: string };
  return { accessKeyId: j.AccessKeyId, secretAccessKey: j.SecretAccessKey };
}

test('alice asks in the browser, bob approves, her key reads the dataset until the request ends; a denial grants nothing', async () => {
  const alice = await signIn('alice');
  await alice.goto(`${rig.base}/ui/signin`);
  // Signed in already: the sign-in page sends her on.
  expect(new URL(alice.url()).pathname).toBe('/ui');
  await look(alice, '01-overview-alice');
  const signin = await open();
  await signin.goto(`${rig.base}/ui/signin`);
  await look(signin, '00-signin');

  // She asks from the dataset's page.
  await alice.goto(`${rig.base}/ui/datasets/training`);
  await look(alice, '02-dataset-training-alice');
  await alice.getByRole('link', { name: 'Request access' }).click();
  await expect.poll(() => alice.getByLabel('Dataset').inputValue()).toBe('training');
  await alice.getByLabel('Level').selectOption('read');
  await alice.getByLabel('For how long').fill('2h');
  await alice.getByLabel('Why you need it').fill('fine-tune the ranker');
  await alice.getByRole('button', { name: 'Ask for access' }).click();
  await expect.poll(() => alice.getByRole('status').first().textContent()).toMatch(/Request #1 is made/);
  // Nothing waits for her own decision: she cannot approve herself.
  expect(await alice.getByRole('button', { name: /Approve #1/ }).count()).toBe(0);
  await look(alice, '03-requests-alice');

  // bob sees it waiting and approves it with a reason.
  const bob = await signIn('bob');
  await expect.poll(() => bob.locator('.cards .n').nth(3).textContent()).toBe('1');
  await bob.getByRole('link', { name: 'Requests', exact: true }).click();
  await look(bob, '04-requests-bob-waiting');
  await bob.getByLabel('Reason for your decision').fill('for the Q4 model');
  await bob.getByRole('button', { name: 'Approve #1' }).click();
  await expect.poll(() => bob.getByRole('status').first().textContent()).toMatch(/Request #1 is approved/);
  await look(bob, '05-requests-bob-approved');

  // serve applied it at once: alice's issued key reads the dataset, and nothing else.
  await rig.server.reconciler.settled();
  const key = await exportedKey('alice');
  const s3 = s3For(rig.moto, key);
  await canRead(s3, 'ai-model-data', 'training/a.txt', 'training');
  await cannotWrite(s3, 'ai-model-data', 'training/a.txt');
  // Another prefix of the same bucket (another dataset) is refused; so is another bucket.
  await expectAccessDenied(s3.send(new GetObjectCommand({ Bucket: 'ai-model-data', Key: 'eval/c.txt' })));
  await cannotTouch(s3, 'other-bucket', 'secret.txt');
  s3.destroy();

  // Her page shows the grant, where it comes from, and her key's id — never its secret.
  await alice.goto(`${rig.base}/ui/principals/alice`);
  const mine = await alice.content();
  expect(mine).toContain('request #1 (approved by bob)');
  expect(mine).toContain(key.accessKeyId);
  expect(mine).not.toContain(key.secretAccessKey);
  await look(alice, '06-principal-alice');
  // bob's page, seen by alice: his access, not his credentials.
  await alice.goto(`${rig.base}/ui/principals/bob`);
  expect(await alice.getByText('Credentials and history are shown only to bob and to operators.').count()).toBe(1);

  // The matrix: alice × training reads "read" with its end; the keyboard moves and opens.
  await alice.goto(`${rig.base}/ui/matrix`);
  await alice.waitForFunction(() => document.documentElement.dataset.matrixRenderMs !== undefined);
  expect(await alice.getByRole('status').first().textContent()).toMatch(/Showing 3 of 3 principals × 3 of 3 datasets/);
  const cell = alice
    .getByRole('gridcell', { name: /^alice on training: read until \d{4}-\d\d-\d\d$/ })
    .or(alice.locator('[role=gridcell][title^="alice on training: read until"]'));
  expect(await cell.count()).toBe(1);
  await look(alice, '07-matrix');
  await alice.getByRole('grid').focus();
  await alice.keyboard.press('ArrowDown');
  await alice.keyboard.press('ArrowRight');
  const activeId = await alice.getByRole('grid').getAttribute('aria-activedescendant');
  expect(activeId).toBe('mx-1-1');
  await alice.keyboard.press('Home');
  await alice.keyboard.press('ArrowUp');
  await alice.keyboard.press('Enter');
  await alice.waitForURL(`${rig.base}/ui/principals/alice`);
  await alice.goto(`${rig.base}/ui/matrix`);
  await alice.waitForFunction(() => document.documentElement.dataset.matrixRenderMs !== undefined);
  await alice.getByRole('searchbox', { name: 'Principal' }).fill('bob');
  await expect.poll(() => alice.getByRole('status').first().textContent()).toMatch(/Showing 1 of 3 principals × 1 of 3 datasets/);

  // The operator: effective access read from the backends, the plan, the audit chain.
  const op = await signInOperator();
  await look(op, '08-overview-operator');
  await op.goto(`${rig.base}/ui/datasets/training`);
  await op.getByRole('button', { name: 'Read effective access now' }).click();
  await op.waitForURL(`${rig.base}/ui/datasets/training`);
  const effective = op.getByRole('table', { name: 'Effective access to training' });
  await expect.poll(() => effective.getByRole('row').filter({ hasText: 'alice' }).first().textContent()).toMatch(/as the spec says/);
  await look(op, '09-dataset-training-operator');
  await op.goto(`${rig.base}/ui/plan`);
  expect(await op.locator('pre.plan').textContent()).toContain('No changes.');
  await look(op, '10-plan');
  await op.goto(`${rig.base}/ui/audit`);
  expect(await op.getByRole('status').first().textContent()).toMatch(/^Chain intact: \d+ entries/);
  expect(await op.getByRole('cell', { name: 'request.approve' }).count()).toBe(1);
  await look(op, '11-audit');

  // Dark mode and a phone-sized screen.
  const dark = await signIn('bob', { colorScheme: 'dark' });
  await look(dark, '12-overview-dark');
  await dark.goto(`${rig.base}/ui/requests`);
  await look(dark, '13-requests-dark');
  // The theme switch: dark on a light system, kept across pages in this browser.
  await alice.goto(`${rig.base}/ui/requests`);
  await alice.getByRole('button', { name: 'Theme: auto' }).click();
  expect(await alice.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
  await alice.goto(`${rig.base}/ui`);
  expect(await alice.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
  expect(await alice.evaluate(() => getComputedStyle(document.documentElement).backgroundColor)).toBe('rgb(17, 20, 24)');
  await look(alice, '13b-overview-dark-by-switch');
  await alice.getByRole('button', { name: 'Theme: dark' }).click();
  await alice.getByRole('button', { name: 'Theme: light' }).click();
  expect(await alice.evaluate(() => document.documentElement.dataset.theme)).toBeUndefined();
  const phone = await signIn('alice', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  for (const [path, name] of [
    ['/ui', '14-overview-phone'],
    ['/ui/requests', '15-requests-phone'],
    ['/ui/matrix', '16-matrix-phone'],
  ] as const) {
    await phone.goto(`${rig.base}${path}`);
    expect(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), `${path} fits the phone's width`).toBe(true);
    await look(phone, name);
  }

  // The request ends (clock moved past it): the next apply takes the access away; her key is refused.
  await rig.server.reconciler.settled();
  rig.advance(2 * 3600_000 + 60_000);
  const applied = await rig.cli('apply', '--auto-approve');
  expect(applied).toContain('- aws:user/alice');
  await keyIsDead(rig.moto, key);
  await alice.goto(`${rig.base}/ui/requests`);
  expect(await alice.locator('#request-1 .state').textContent()).toBe('expired');
  await look(alice, '17-requests-alice-expired');

  // She asks again; bob denies; nothing is granted and her old key stays refused.
  await alice.getByLabel('Dataset').selectOption('training');
  await alice.getByLabel('Why you need it').fill('one more run');
  await alice.getByRole('button', { name: 'Ask for access' }).click();
  await expect.poll(() => alice.getByRole('status').first().textContent()).toMatch(/Request #2 is made/);
  await bob.goto(`${rig.base}/ui/requests`);
  await bob.getByLabel('Reason for your decision').fill('use the sample set');
  await bob.getByRole('button', { name: 'Deny #2' }).click();
  await expect.poll(() => bob.getByRole('status').first().textContent()).toMatch(/Request #2 is denied/);
  await rig.server.reconciler.settled();
  expect(await rig.cli('plan')).toContain('No changes.');
  expect((await rig.cliResult('credentials', 'export', 'alice', '--format', 'json')).code).toBe(1);
  expect(await keyRefused(rig.moto, key)).toBe(true);

  // The chain has the whole story and verifies.
  const log = JSON.parse(await rig.cli('audit', 'log', '--json')) as { event: string; address: string | null; actor: string }[];
  expect(
    log.filter((e) => e.address === 'request/1' || e.address === 'request/2').map((e) => `${e.event} ${e.address} ${e.actor.replace(/ \(serve\)$|@.*$/, '')}`),
  ).toEqual([
    'request.create request/1 oidc:corp:u-alice',
    'request.approve request/1 oidc:corp:u-bob',
    expect.stringMatching(/^request\.expire request\/1 /),
    'request.create request/2 oidc:corp:u-alice',
    'request.deny request/2 oidc:corp:u-bob',
  ]);
  expect(await rig.cli('audit', 'verify')).toMatch(/^Audit chain intact/);
  expect(problems).toEqual([]);
}, 240_000);
