// SCIM writes reach the SQLite database file through the reconciler thread's checkpoints, not
// through a checkpoint inside a SCIM request (serve.ts, reconcile-worker.ts). The built
// `datagrant serve` runs in a child process (run `npm run build` first).
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { USER_SCHEMA } from '../../src/scim/schemas.js';
import { startServeProcess, type ServeProcess } from '../support/serve-process.js';

const TOKEN = 'checkpoint-test-token';
let serve: ServeProcess;
const copies = mkdtempSync(join(tmpdir(), 'dg-ckpt-'));
beforeAll(async () => {
  serve = await startServeProcess(TOKEN);
});
afterAll(async () => {
  await serve?.stop();
  rmSync(copies, { recursive: true, force: true });
});

/** Users in the database file alone: what a checkpoint has moved there from the write-ahead log. */
function usersInDatabaseFile(): number | undefined {
  const copy = join(copies, `scim-${Date.now()}.db`);
  copyFileSync(join(serve.dir, '.datagrant', 'scim.db'), copy);
  try {
    const db = new Database(copy, { readonly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM scim_users').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return undefined; // copied while a checkpoint was writing: look again
  }
}

test("a few SCIM writes, far below SQLite's own checkpoint threshold, reach the database file", async () => {
  // GIVEN five users written over SCIM (a few pages of log: SQLite alone would leave them there)
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`${serve.url}/scim/v2/Users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/scim+json' },
      body: JSON.stringify({ schemas: [USER_SCHEMA], userName: `ckpt${i}@example.com` }),
    });
    expect(r.status).toBe(201);
  }
  // THEN the reconciler thread's checkpoints move them into the database file
  const deadline = Date.now() + 10_000;
  let n = usersInDatabaseFile();
  while (n !== 5 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    n = usersInDatabaseFile();
  }
  expect(n).toBe(5);
});
