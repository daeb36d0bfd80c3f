// What `datagrant login`, `credentials export --server` and `exec --server` talk to: a real
// OpenID Provider (test/support/oidc.ts) and a real `datagrant serve` (startServe) whose session
// broker is a fake that records each request and answers with a fresh secret — AWS sessions on
// backend `aws`, PostgreSQL logins on `warehouse`. The spec names alice by her email; bob signs
// in at the IdP but names no principal.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Io } from '../../src/app/io.js';
import type { IssuedSession, SessionBroker, SessionRequest } from '../../src/app/sessions-port.js';
import { startServe, type RunningServer } from '../../src/serve/serve.js';
import { deviceFlow, discover } from '../../src/cli/session/oidc-client.js';
import type { CliResult, Workspace } from './cli.js';
import { freePort } from './moto.js';
import { startIdp, type IdpOptions, type TestIdp } from './oidc.js';

export class RecordingBroker implements SessionBroker {
  requests: SessionRequest[] = [];
  issued: IssuedSession[] = [];
  /** Every secret handed out, for scans of what must never show them. */
  secrets: string[] = [];
  async issue(req: SessionRequest): Promise<IssuedSession> {
    this.requests.push(req);
    const secret = `rig-secret-${Math.random().toString(36).slice(2)}`;
    const token = `rig-token-${Math.random().toString(36).slice(2)}`;
    this.secrets.push(secret, token);
    const n = this.requests.length;
    const session: IssuedSession =
      req.backend === 'warehouse'
        ? {
            kind: 'postgres',
            user: `${req.principal}_s${n}`,
            password: secret,
            host: '127.0.0.1',
            port: 5432,
            database: 'analytics',
            validUntil: '2030-01-01T01:00:00.000Z',
          }
        : {
            kind: 'aws',
            accessKeyId: `ASIA${req.principal.toUpperCase()}${n}`,
            secretAccessKey: secret,
            sessionToken: token,
            expiration: '2030-01-01T01:00:00.000Z',
          };
    this.issued.push(session);
    return session;
  }
}

export interface LoginRig {
  idp: TestIdp;
  serve: RunningServer;
  broker: RecordingBroker;
  /** `datagrant login` as `account` through the device flow, the person approving on the IdP's pages. */
  login(ws: Workspace, account: string, ...extra: string[]): Promise<CliResult>;
  /** An ID token for datagrant's client, as a workload's platform would put in a file. */
  idToken(account: string): Promise<string>;
  close(): Promise<void>;
}

export async function startLoginRig(idpOptions: Partial<IdpOptions> = {}): Promise<LoginRig> {
  const idp = await startIdp({
    accounts: { alice: { sub: 'u-alice', email: 'alice@example.com' }, bob: { sub: 'u-bob', email: 'bob@example.com' } },
    deviceInterval: 1,
    ...idpOptions,
  });
  const dir = mkdtempSync(join(tmpdir(), 'dg-login-rig-'));
  // The backends are never reached (the broker is a fake): closed ports make the reconciler's
  // reads fail at once instead of hanging.
  writeFileSync(
    join(dir, 'datagrant.yaml'),
    `version: 1
settings:
  oidc: [{ name: corp, issuer: "${idp.issuer}", audience: ${idp.cliClientId} }]
backends:
  aws: { type: aws, endpoint: "http://127.0.0.1:${await freePort()}" }
  warehouse: { type: postgres, url: "postgres://datagrant@127.0.0.1:${await freePort()}/analytics" }
principals:
  alice: { type: person, email: alice@example.com }
`,
  );
  const io: Io = {
    stdout: () => undefined,
    stderr: () => undefined,
    env: {
      DATAGRANT_MASTER_KEY: 'f'.repeat(64),
      // SCIM is not used here; serve requires a token for it all the same.
      DATAGRANT_SCIM_TOKEN_SHA256: createHash('sha256').update(randomBytes(16)).digest('hex'),
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'example-secret',
      AWS_REGION: 'us-east-1',
    },
    cwd: dir,
    isTTY: false,
    now: () => new Date(),
  };
  const broker = new RecordingBroker();
  const serve = await startServe(io, { port: 0, intervalSeconds: 3600, logger: pino({ level: 'silent' }), sessionBroker: broker });

  return {
    idp,
    serve,
    broker,
    async login(ws, account, ...extra) {
      let approval: Promise<void> | undefined;
      ws.onStderr = (chunk) => {
        const code = /enter the code (\S+)/.exec(chunk)?.[1];
        if (code && !approval) approval = idp.approveDevice(code, account);
      };
      try {
        const r = await ws.run('login', '--server', serve.url, '--issuer-url', idp.issuer, '--client-id', idp.cliClientId, ...extra);
        await approval;
        return r;
      } finally {
        delete ws.onStderr;
      }
    },
    async idToken(account) {
      const deps = { now: () => new Date(), sleep: async () => approval, timeoutMs: 5000 };
      let approval: Promise<void> | undefined;
      const ep = await discover(idp.issuer, deps);
      const tokens = await deviceFlow(
        ep,
        { clientId: idp.cliClientId, scope: 'openid email' },
        (p) => void (approval = idp.approveDevice(p.userCode, account)),
        deps,
      );
      return tokens.idToken;
    },
    async close() {
      await serve.close();
      await idp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
