// Two connections to one SQLite state append to the audit chain at once: serve's main thread
// (the credential endpoint) and its reconciler thread, or serve and a CLI command. Each append
// waits its turn; none fails, and the chain stays whole.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { expect, test } from 'vitest';
import { MasterKey } from '../../src/store/crypto.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const KEY = 'c'.repeat(64);
const EACH = 1500;

/** A thread with its own SqliteStore on `file`: once `start` is called, it appends EACH entries as fast as it can. */
async function appender(file: string): Promise<{ start(): Promise<{ failures: string[] }> }> {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('tsx/package.json');
  const api = (require(pkg) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!.import.default;
  const tsx = pathToFileURL(join(dirname(pkg), api)).href;
  const store = new URL('../../src/store/sqlite.ts', import.meta.url).href;
  const crypto = new URL('../../src/store/crypto.ts', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = await import('node:worker_threads');
    (await import(${JSON.stringify(tsx)})).register();
    const { SqliteStore } = await import(${JSON.stringify(store)});
    const { MasterKey } = await import(${JSON.stringify(crypto)});
    const s = new SqliteStore(workerData.file, MasterKey.parse(workerData.key));
    parentPort.postMessage('ready');
    await new Promise((r) => parentPort.once('message', r));
    const failures = [];
    for (let i = 0; i < workerData.n; i++) {
      try { await s.audit({ actor: 'thread', event: 'test.append', address: null, outcome: 'ok', detail: String(i) }, new Date().toISOString()); }
      catch (e) { failures.push(String(e.code ?? e.message)); }
    }
    await s.close();
    parentPort.postMessage({ failures });
  `;
  const w = new Worker(code, { eval: true, workerData: { file, key: KEY, n: EACH } });
  const failed = new Promise<never>((_, reject) => w.once('error', reject));
  await Promise.race([new Promise((r) => w.once('message', r)), failed]);
  return {
    start() {
      const done = Promise.race([new Promise<{ failures: string[] }>((r) => w.once('message', r)), failed]);
      w.postMessage('go');
      return done;
    },
  };
}

test('audit appends from two threads all land, in one unbroken chain', async () => {
  // GIVEN a state store, and a second thread with its own connection to it
  const dir = mkdtempSync(join(tmpdir(), 'dg-audit-threads-'));
  const file = join(dir, 'state.db');
  const store = new SqliteStore(file, MasterKey.parse(KEY));
  try {
    // WHEN both append at the same time (yielding now and then, as a server does between requests)
    const other = (await appender(file)).start();
    const failures: string[] = [];
    for (let i = 0; i < EACH; i++) {
      try {
        await store.audit({ actor: 'main', event: 'test.append', address: null, outcome: 'ok', detail: String(i) }, new Date().toISOString());
      } catch (e) {
        failures.push(String((e as { code?: string }).code ?? (e as Error).message));
      }
      if (i % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    const theirs = await other;
    // THEN no append failed, and the chain holds every entry of both
    expect(failures).toEqual([]);
    expect(theirs.failures).toEqual([]);
    const entries = await store.auditEntries();
    expect(entries.filter((e) => e.actor === 'main')).toHaveLength(EACH);
    expect(entries.filter((e) => e.actor === 'thread')).toHaveLength(EACH);
    expect(await store.verifyAudit()).toEqual({ ok: true, entries: 2 * EACH });
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
