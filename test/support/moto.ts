// moto in server mode, with IAM enforcement, for tests that prove access with issued keys.
//
// Start-up: `moto_server` on a free loopback port; while auth is still off, seed an admin user
// (`moto-admin`, path `/`, outside datagrant's ownership boundary) allowed `*` on `*`, its key, and
// sample buckets; then turn enforcement on. From then on every request must be signed by a key
// moto knows — there are no root credentials — so tests run the code under test with `admin`.
// `accounts` seeds, in each other account named, a role (`ACCOUNT_ROLE`) that trusts the admin and
// is allowed `*`: assuming it with the admin's key acts in that account (moto keeps one IAM per
// account id, and a session's account is its role ARN's).
// There is no skipping: without moto_server the tests fail with the command that installs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { CreateAccessKeyCommand, CreateRoleCommand, CreateUserCommand, IAMClient, PutRolePolicyCommand, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

export interface AwsKey {
  accessKeyId: string;
  secretAccessKey: string;
  /** Present for an STS session's credentials. */
  sessionToken?: string;
}

export interface Moto {
  endpoint: string;
  region: 'us-east-1';
  /** The moto_server process (benchmarks lower its priority). */
  pid: number | undefined;
  /** Key of `moto-admin`, allowed everything; changes on every `reset()`. */
  admin: AwsKey;
  /** Wipe all state, then seed again (and re-enable enforcement if it was on). */
  reset(): Promise<void>;
  /** Turn IAM enforcement on: from now on every request must be signed by a known key. */
  enableAuth(): Promise<void>;
  stop(): Promise<void>;
}

export const ADMIN_USER = 'moto-admin';
export const SAMPLE_BUCKETS: Record<string, string[]> = {
  'ai-model-data': ['training/a.txt', 'training/b.txt', 'eval/c.txt'],
  'ai-model-artifacts': ['model.bin'],
  'other-bucket': ['secret.txt'],
};

/** The role seeded in each of `startMoto`'s `accounts`. */
export const ACCOUNT_ROLE = 'datagrant-admin';
/** moto's default account: the admin's own. */
export const MOTO_ACCOUNT = '123456789012';

export const accountRoleArn = (account: string) => `arn:aws:iam::${account}:role/${ACCOUNT_ROLE}`;

const REGION = 'us-east-1';
// Seeding runs before enforcement, when moto accepts any signature.
const SEED_KEY: AwsKey = { accessKeyId: 'AKIASEEDSEEDSEEDSEED', secretAccessKey: 'seed-only-not-a-secret' };

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function post(endpoint: string, path: string, body?: string): Promise<void> {
  const res = await fetch(`${endpoint}${path}`, {
    method: 'POST',
    ...(body !== undefined ? { body, headers: { 'Content-Type': 'text/plain' } } : {}),
  });
  if (!res.ok) throw new Error(`moto ${path}: HTTP ${res.status} ${await res.text()}`);
}

export function s3As(moto: Pick<Moto, 'endpoint'>, key: AwsKey): S3Client {
  return new S3Client({ region: REGION, endpoint: moto.endpoint, forcePathStyle: true, credentials: key, maxAttempts: 1 });
}

export function iamAs(moto: Pick<Moto, 'endpoint'>, key: AwsKey): IAMClient {
  return new IAMClient({ region: REGION, endpoint: moto.endpoint, credentials: key, maxAttempts: 1 });
}

/** Resolves with the error when `promise` fails with S3/IAM access denied; throws otherwise. */
export async function expectAccessDenied(promise: Promise<unknown>): Promise<Error> {
  let value: unknown;
  try {
    value = await promise;
  } catch (e) {
    const err = e as Error & { Code?: string; $metadata?: { httpStatusCode?: number } };
    const code = err.name ?? err.Code;
    if (code === 'AccessDenied' || code === 'AccessDeniedException' || err.$metadata?.httpStatusCode === 403) return err;
    throw new Error(`expected access denied, got ${code}: ${err.message}`, { cause: e });
  }
  (value as { Body?: { destroy?: () => void } } | undefined)?.Body?.destroy?.();
  throw new Error(
    `expected access denied, but the request succeeded${value && typeof value === 'object' && '$metadata' in value ? '' : `: ${JSON.stringify(value)}`}`,
  );
}

/** Sends every request of `client` to moto's IAM of `account` (moto reads this header before the key). */
function inAccount<C extends IAMClient>(client: C, account: string): C {
  client.middlewareStack.add(
    (next) => (args) => {
      (args.request as { headers: Record<string, string> }).headers['x-moto-account-id'] = account;
      return next(args);
    },
    { step: 'build', name: 'motoAccount' },
  );
  return client;
}

async function seedAccount(endpoint: string, account: string): Promise<void> {
  const iam = inAccount(iamAs({ endpoint }, SEED_KEY), account);
  try {
    await iam.send(
      new CreateRoleCommand({
        RoleName: ACCOUNT_ROLE,
        Path: '/',
        AssumeRolePolicyDocument: JSON.stringify({
          Version: '2012-10-17',
          Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${MOTO_ACCOUNT}:user/${ADMIN_USER}` }, Action: 'sts:AssumeRole' }],
        }),
      }),
    );
    await iam.send(
      new PutRolePolicyCommand({
        RoleName: ACCOUNT_ROLE,
        PolicyName: 'everything',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }),
      }),
    );
  } finally {
    iam.destroy();
  }
}

async function seed(endpoint: string, accounts: readonly string[]): Promise<AwsKey> {
  for (const account of accounts) await seedAccount(endpoint, account);
  const iam = iamAs({ endpoint }, SEED_KEY);
  const s3 = s3As({ endpoint }, SEED_KEY);
  try {
    await iam.send(new CreateUserCommand({ UserName: ADMIN_USER, Path: '/' }));
    await iam.send(
      new PutUserPolicyCommand({
        UserName: ADMIN_USER,
        PolicyName: 'everything',
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] }),
      }),
    );
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: ADMIN_USER }))).AccessKey!;
    for (const [bucket, objects] of Object.entries(SAMPLE_BUCKETS)) {
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      for (const k of objects) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: `contents of ${bucket}/${k}\n` }));
    }
    return { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! };
  } finally {
    iam.destroy();
    s3.destroy();
  }
}

/**
 * `iamResources`: moto judges each IAM call by the resource AWS authorises it on (the user, group,
 * role or policy ARN, path included) instead of "*", so a policy scoped to a path is tested as AWS
 * applies it; see moto_iam_resources.py.
 */
export async function startMoto(opts: { auth?: boolean; managedPolicies?: boolean; accounts?: readonly string[]; iamResources?: boolean } = {}): Promise<Moto> {
  const accounts = opts.accounts ?? [];
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess;
  let output = '';
  try {
    const args = ['-H', '127.0.0.1', '-p', String(port)];
    const [command, argv] = opts.iamResources
      ? [process.env.MOTO_PYTHON ?? 'python3', [new URL('./moto_iam_resources.py', import.meta.url).pathname, ...args]]
      : ['moto_server', args];
    child = spawn(command, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // AWS managed policies (AdministratorAccess…) exist, so foreign attachments can be tested.
      // Loading them (again on every reset) takes seconds: a test that attaches none can opt out.
      env: { ...process.env, MOTO_IAM_LOAD_MANAGED_POLICIES: String(opts.managedPolicies ?? true) },
    });
  } catch (e) {
    throw new Error(`cannot start moto_server: ${(e as Error).message}`, { cause: e });
  }
  const spawnFailed = new Promise<never>((_, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          e.code === 'ENOENT'
            ? "moto_server is not installed (or not on PATH): the AWS tests need it. Install it with `pip install 'moto[server]'` (or run `npm test`, which does)."
            : `cannot start moto_server: ${e.message}`,
        ),
      ),
    );
    child.once('exit', (code) => reject(new Error(`moto_server exited with code ${code} before it was ready:\n${output.slice(-2000)}`)));
  });
  spawnFailed.catch(() => undefined);
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));

  const ready = (async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const res = await fetch(`${endpoint}/moto-api/`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`moto_server did not answer on ${endpoint} within 30 s:\n${output.slice(-2000)}`);
      await sleep(50);
    }
  })();
  try {
    await Promise.race([ready, spawnFailed]);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  child.removeAllListeners('exit');
  // A test worker that dies must not leave moto running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  let authOn = false;
  const moto: Moto = {
    endpoint,
    region: REGION,
    pid: child.pid,
    admin: await seed(endpoint, accounts),
    async enableAuth() {
      await post(endpoint, '/moto-api/reset-auth', '0');
      authOn = true;
    },
    async reset() {
      // Enforcement survives a reset; seeding needs it off.
      await post(endpoint, '/moto-api/reset-auth', 'inf');
      await post(endpoint, '/moto-api/reset');
      moto.admin = await seed(endpoint, accounts);
      if (authOn) await moto.enableAuth();
    },
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
  };
  if (opts.auth ?? true) await moto.enableAuth();
  return moto;
}
