// The built CLI (`bin/datagrant.js serve`, run `npm run build` first) in a child process, in a
// workspace of its own whose spec has no backends: SCIM over real sockets, nothing else called.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './moto.js';

const BIN = new URL('../../bin/datagrant.js', import.meta.url).pathname;

export interface ServeProcess {
  url: string;
  port: number;
  dir: string;
  /** What serve logged so far (JSON lines). */
  log(): string;
  stop(): Promise<void>;
}

export async function startServeProcess(token: string, args: string[] = []): Promise<ServeProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'dg-serve-'));
  writeFileSync(join(dir, 'datagrant.yaml'), 'version: 1\nbackends: {}\nscim: { groups: {} }\n');
  const port = await freePort();
  const logFile = join(dir, 'serve.log');
  const out = openSync(logFile, 'a');
  const child = spawn(process.execPath, [BIN, 'serve', '--port', String(port), ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH, DATAGRANT_MASTER_KEY: 'c'.repeat(64), DATAGRANT_SCIM_TOKEN_SHA256: createHash('sha256').update(token).digest('hex') },
    stdio: ['ignore', out, out],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const log = () => readFileSync(logFile, 'utf8');
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}:\n${log()}`);
    const up = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not listen within 30 s:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    dir,
    log,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
