// Console benchmark (issue 15): the access matrix with 5,000 principals × 500 datasets in Debian's
// chromium. Target: drawn in under 1 s after its data arrives (parse, index, filter, first frame),
// measured by the page itself (performance.now(), from the response's last byte to the second
// animation frame after the first draw) and printed beside the limit; also a filter and a scroll.
//
// The console is served by the real routes (registerConsole) on Fastify, with the spec given
// directly: 5,000 principals in 50 groups of 20 datasets each, 10 direct grants each, a third of
// them ending within 90 days. No backend is called by the matrix.
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { chromium } from 'playwright-core';
import { hashToken } from '../src/scim/server.js';
import { adminTokenHashes, registerConsole } from '../src/serve/console.js';
import type { RequestsDirectory } from '../src/serve/requests.js';
import { specSchema, type Spec } from '../src/spec/schema.js';
import { MasterKey } from '../src/store/crypto.js';
import type { StateStore } from '../src/store/store.js';

const PRINCIPALS = 5000;
const DATASETS = 500;
const GROUPS = 50;
const LIMIT_MS = 1000;
const RUNS = 5;
const CHROMIUM = process.env.DATAGRANT_CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'bench-operator-token-0123456789';

const now = new Date();
const day = 86_400_000;
const datasets = Object.fromEntries(
  Array.from({ length: DATASETS }, (_, d) => [`ds-${String(d).padStart(3, '0')}`, { backend: 'aws', bucket: `bucket-${d % 20}`, prefix: `p${d}/` }]),
);
const names = Object.keys(datasets);
const groups = Object.fromEntries(
  Array.from({ length: GROUPS }, (_, g) => [
    `team-${g}`,
    { grants: Array.from({ length: 20 }, (_, k) => ({ dataset: names[(g * 7 + k * 13) % DATASETS]!, access: 'read' })) },
  ]),
);
const principals = Object.fromEntries(
  Array.from({ length: PRINCIPALS }, (_, p) => [
    `user-${String(p).padStart(4, '0')}`,
    {
      type: p % 10 === 0 ? 'service' : 'person',
      groups: [`team-${p % GROUPS}`],
      grants: Array.from({ length: 10 }, (_, k) => ({
        dataset: names[(p * 31 + k * 17) % DATASETS]!,
        access: k % 3 === 0 ? 'write' : k % 7 === 0 ? 'admin' : 'read',
        ...(k % 3 === 1 ? { expires: new Date(now.getTime() + ((p + k) % 90) * day + day).toISOString().slice(0, 10) } : {}),
      })),
    },
  ]),
);
const parsed = Date.now();
const spec: Spec = specSchema.parse({ version: 1, backends: { aws: { type: 'aws' } }, datasets, groups, principals });
console.log(
  `Console matrix: ${PRINCIPALS} principals × ${DATASETS} datasets (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')})`,
);
console.log(`  spec built and validated in ${Date.now() - parsed} ms`);

const key = new MasterKey(Buffer.alloc(32, 7));
const store = { masterKey: key, audit: async () => undefined } as unknown as StateStore;
const directory: RequestsDirectory = { issuers: [], index: new Map(), world: { base: spec, people: spec.principals } };
const app = Fastify({ logger: false });
registerConsole(app, {
  spec: async () => spec,
  directory: async () => directory,
  store: async () => store,
  adminTokenHashes: adminTokenHashes(hashToken(TOKEN)),
  assetsDir: fileURLToPath(new URL('../dist/ui/', import.meta.url)),
});
const base = await app.listen({ host: '127.0.0.1', port: 0 });

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/ui/signin`);
  await page.getByLabel('Admin token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in as operator' }).click();
  await page.waitForURL(`${base}/ui`);

  const sizes: number[] = [];
  page.on('response', (r) => {
    if (r.url().endsWith('/ui/data/matrix')) void r.body().then((b) => sizes.push(b.length));
  });
  const renders: number[] = [];
  const loads: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = Date.now();
    await page.goto(`${base}/ui/matrix`);
    await page.waitForFunction(() => document.documentElement.dataset.matrixRenderMs !== undefined, undefined, { timeout: 60_000 });
    loads.push(Date.now() - start);
    renders.push(Number(await page.evaluate(() => document.documentElement.dataset.matrixRenderMs)));
  }
  const status = await page.getByRole('status').first().textContent();
  // A filter (typing a name) and a scroll to the far corner, each to its next frame.
  const filterMs = await page.evaluate(async () => {
    const input = document.getElementById('f-principal') as HTMLInputElement;
    const status = document.getElementById('matrix-status')!;
    const before = status.textContent;
    const t = performance.now();
    input.value = 'user-12';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    while (status.textContent === before) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    // The debounce (120 ms) is the page waiting for more keys, not work.
    return performance.now() - t - 120;
  });
  const scrollMs = await page.evaluate(async () => {
    const input = document.getElementById('f-principal') as HTMLInputElement;
    input.value = '';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    await new Promise((r) => setTimeout(r, 300));
    const grid = document.getElementById('matrix')!;
    const t = performance.now();
    grid.scrollTop = grid.scrollHeight;
    grid.scrollLeft = grid.scrollWidth;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now() - t;
  });
  const sorted = [...renders].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const worst = sorted[sorted.length - 1]!;
  console.log(`  ${status}`);
  console.log(
    `  data: ${((sizes[0] ?? 0) / 1024 / 1024).toFixed(1)} MiB JSON; page load to drawn (incl. the request): median ${loads.sort((a, b) => a - b)[Math.floor(RUNS / 2)]} ms`,
  );
  console.log(`  drawn after the data arrived: median ${median} ms, worst ${worst} ms of ${RUNS} (limit ${LIMIT_MS} ms) ${worst < LIMIT_MS ? 'OK' : 'OVER'}`);
  console.log(`  filter by name to the next frame: ${filterMs.toFixed(0)} ms; scroll to the far corner to the next frame: ${scrollMs.toFixed(0)} ms`);
} finally {
  await browser.close();
  await app.close();
}
