// A real `serve` for the web console's tests: moto with IAM enforcement, a local OpenID provider
// with the console registered as a public client (PKCE), an operator token, and a clock the test
// may move (serve's pages and request decisions read it; so does the CLI run through `cli`).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { Io } from '../../src/app/io.js';
import { main } from '../../src/cli/main.js';
import { hashToken } from '../../src/scim/server.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import { startMoto, type Moto } from '../support/moto.js';
import { startIdp, type IdpAccount, type TestIdp } from '../support/oidc.js';
import { useMotoAdmin } from './aws-support.js';

export const ADMIN_TOKEN = 'console-operator-token-0123456789abcdef';

export interface ConsoleRig {
  moto: Moto;
  idp: TestIdp;
  server: RunningServer;
  base: string;
  dir: string;
  io: Io;
  /** serve's log lines (JSON). */
  log: string[];
  /** Moves serve's clock (and the CLI's) by `ms`. */
  advance(ms: number): void;
  now(): Date;
  cli(...args: string[]): Promise<string>;
  cliResult(...args: string[]): Promise<{ code: number; out: string }>;
  writeSpec(text: string): void;
  close(): Promise<void>;
}

/** `spec(issuer)` is the spec's text for the provider's issuer URL. */
export async function startConsoleRig(o: {
  accounts: Record<string, IdpAccount>;
  spec: (issuer: string) => string;
  env?: Record<string, string>;
  trustProxy?: boolean;
}): Promise<ConsoleRig> {
  const moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  const idp = await startIdp({ accounts: o.accounts });
  const dir = mkdtempSync(join(tmpdir(), 'dg-console-'));
  const writeSpec = (text: string) => writeFileSync(join(dir, 'datagrant.yaml'), text);
  writeSpec(o.spec(idp.issuer));
  let offset = 0;
  const now = () => new Date(Date.now() + offset);
  // The shell's own DATAGRANT_* settings (a store URL, a client secret) are not this test's.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DATAGRANT_') || k.startsWith('DATAGRANT_TEST_')));
  const io: Io = {
    stdout: () => undefined,
    stderr: () => undefined,
    env: {
      ...inherited,
      DATAGRANT_MASTER_KEY: 'd'.repeat(64),
      DATAGRANT_SCIM_TOKEN_SHA256: hashToken('scim-token-console-0123456789'),
      DATAGRANT_CONSOLE_ADMIN_TOKEN_SHA256: hashToken(ADMIN_TOKEN),
      ...o.env,
    },
    cwd: dir,
    isTTY: false,
    now,
  };
  const cliResult = async (...args: string[]) => {
    let out = '';
    const code = await main(args, { ...io, stdout: (s) => (out += s), stderr: (s) => (out += s) });
    return { code, out };
  };
  const cli = async (...args: string[]) => {
    const r = await cliResult(...args);
    expect(r.code, `${args.join(' ')}:\n${r.out}`).toBe(0);
    return r.out;
  };
  await cli('init');
  await cli('apply', '--auto-approve');
  const log: string[] = [];
  const server = await startServe(io, {
    port: 0,
    intervalSeconds: 3600,
    ...(o.trustProxy ? { trustProxy: true } : {}),
    logger: pino({ level: 'debug' }, { write: (l: string) => void log.push(l) }),
  });
  idp.registerConsole(`${server.url}/ui/callback`);
  return {
    moto,
    idp,
    server,
    base: server.url,
    dir,
    io,
    log,
    advance: (ms) => void (offset += ms),
    now,
    cli,
    cliResult,
    writeSpec,
    async close() {
      await server.close();
      await idp.close();
      await moto.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
