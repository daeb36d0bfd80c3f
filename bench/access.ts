// Effective-access benchmark (issue 13): the AWS driver's readAccess over 5,000 principals and 500
// datasets on moto (IAM enforcement on), through a counting proxy. Reads are bulk, so the requests
// have a bound that does not grow with principals or datasets:
//   1 GetCallerIdentity + P GetAccountAuthorizationDetails pages + 2 for the credential report
//   (generate, get) + B GetBucketPolicy (one per distinct bucket) [+ 2 per attached policy the
//   bulk read lacks: none here].
// Target: the whole read, and the evaluation in it, in seconds, not minutes.
//
// The account: 4,500 datagrant-shaped users (path /datagrant/, an inline dg-direct-grants policy
// with a write grant, one of 50 groups whose managed policy reads 10 datasets, a key), 400 other users
// with hand-made inline policies (whole datasets, parts of them, other prefixes), 100 roles with
// attached policies (10 of them AWS's AmazonS3ReadOnlyAccess), and a bucket policy per bucket
// (another account, a user, a conditional Deny). BENCH_ACCESS_SEED=apply makes the 4,500 users and
// groups by applying a generated spec with the CLI instead of by the IAM SDK, to compare the two.
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AddUserToGroupCommand,
  AttachGroupPolicyCommand,
  AttachRolePolicyCommand,
  CreateAccessKeyCommand,
  CreateGroupCommand,
  CreatePolicyCommand,
  CreateRoleCommand,
  CreateUserCommand,
  IAMClient,
  PutUserPolicyCommand,
} from '@aws-sdk/client-iam';
import { CreateBucketCommand, PutBucketPolicyCommand, S3Client } from '@aws-sdk/client-s3';
import type { Io } from '../src/app/io.js';
import { readAccessDocuments } from '../src/backends/aws/access.js';
import { accessReport } from '../src/plan/access.js';
import { renderAccessCsv, renderAccessText } from '../src/render/access.js';
import { renderAccessHtml } from '../src/render/html.js';
import { parseSpec } from '../src/spec/load.js';
import { AwsConnection } from '../src/backends/aws/connection.js';
import { eachLimited } from '../src/backends/aws/read.js';
import { effectiveAccess, type S3AccessDataset } from '../src/backends/aws/effective.js';
import { closeBackends, makeBackends } from '../src/backends/factory.js';
import { main } from '../src/cli/main.js';
import { grantStatements } from '../src/compile/aws/compile.js';
import { openStore, statePaths } from '../src/store/open.js';
import { startMoto } from '../test/support/moto.js';
import { startProxy } from '../test/support/http-proxy.js';

const MANAGED = Number(process.env.BENCH_ACCESS_MANAGED ?? 4500);
const OTHERS = Number(process.env.BENCH_ACCESS_OTHERS ?? 400);
const ROLES = Number(process.env.BENCH_ACCESS_ROLES ?? 100);
const DATASETS = Number(process.env.BENCH_ACCESS_DATASETS ?? 500);
const BUCKETS = 10;
const GROUPS = 50;
const SEED = process.env.BENCH_ACCESS_SEED === 'apply' ? 'apply' : 'sdk';
const IN_FLIGHT = 32;
const ACCOUNT = '123456789012';

const bucketOf = (i: number) => `bench-${i % BUCKETS}`;
const datasets: S3AccessDataset[] = Array.from({ length: DATASETS }, (_, i) => ({ name: `ds${i}`, bucket: bucketOf(i), prefix: `p${i}/` }));
const groupDatasets = (g: number) => Array.from({ length: 10 }, (_, k) => (g * 10 + k) % DATASETS);
const doc = (Statement: object[]) => JSON.stringify({ Version: '2012-10-17', Statement });
const grant = (i: number, access: 'read' | 'write') => grantStatements(bucketOf(i), `p${i}/`, { dataset: `ds${i}`, access });

const moto = await startMoto({ auth: false });
const proxy = await startProxy(moto.endpoint);
let gaadPages = 0;
proxy.onReceived = (_req, body) => {
  if (body.includes('Action=GetAccountAuthorizationDetails')) gaadPages++;
  return undefined;
};
const cfg = { region: moto.region, endpoint: moto.endpoint, credentials: moto.admin, maxAttempts: 3 };
const iam = new IAMClient(cfg);
const s3 = new S3Client({ ...cfg, forcePathStyle: true });
let seedRequests = 0;
const send = async (client: IAMClient | S3Client, command: object) => {
  seedRequests++;
  await (client as IAMClient).send(command as never);
};

console.log(
  `access: moto with IAM enforcement, ${MANAGED + OTHERS + ROLES} principals (${MANAGED} datagrant users in ${GROUPS} groups, ${OTHERS} other users, ${ROLES} roles), ` +
    `${DATASETS} datasets on ${BUCKETS} buckets (${cpus().length}× ${cpus()[0]?.model ?? 'cpu'}, load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')})`,
);
let dir: string | undefined;
try {
  const seedStart = performance.now();
  // Buckets and their policies.
  for (let b = 0; b < BUCKETS; b++) {
    await send(s3, new CreateBucketCommand({ Bucket: `bench-${b}` }));
    const policy = doc([
      {
        Sid: 'Partner',
        Effect: 'Allow',
        Principal: { AWS: 'arn:aws:iam::111122223333:root' },
        Action: 's3:GetObject',
        Resource: `arn:aws:s3:::bench-${b}/p${b}/*`,
      },
      {
        Sid: 'Auditor',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${ACCOUNT}:user/other0` },
        Action: 's3:GetObject',
        Resource: `arn:aws:s3:::bench-${b}/*`,
      },
      {
        Sid: 'TlsOnly',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:*',
        Resource: `arn:aws:s3:::bench-${b}/*`,
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ]);
    await send(s3, new PutBucketPolicyCommand({ Bucket: `bench-${b}`, Policy: policy }));
  }
  /** The spec whose principals the datagrant-shaped users are (seeded by apply, or alike by the SDK). */
  const specText = () => {
    const l = ['version: 1', 'backends:', '  aws: { type: aws }', 'datasets:'];
    for (const d of datasets) l.push(`  ${d.name}: { backend: aws, bucket: ${d.bucket}, prefix: ${d.prefix} }`);
    l.push('groups:');
    for (let g = 0; g < GROUPS; g++)
      l.push(
        `  g${g}: { grants: [${groupDatasets(g)
          .map((i) => `{ dataset: ds${i}, access: read }`)
          .join(', ')}] }`,
      );
    l.push('principals:');
    for (let i = 0; i < MANAGED; i++)
      l.push(`  user${i}: { type: service, groups: [g${i % GROUPS}], grants: [{ dataset: ds${i % DATASETS}, access: write }] }`);
    return l.join('\n');
  };
  let installation: string | undefined;
  if (SEED === 'apply') {
    // The datagrant-shaped users and groups by `datagrant apply` of a generated spec.
    dir = mkdtempSync(join(tmpdir(), 'dg-bench-access-'));
    writeFileSync(join(dir, 'datagrant.yaml'), specText());
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
      AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
      AWS_REGION: moto.region,
      AWS_ENDPOINT_URL: moto.endpoint,
    });
    let out = '';
    const io: Io = {
      stdout: (s) => (out += s),
      stderr: (s) => (out += s),
      env: { ...process.env, DATAGRANT_MASTER_KEY: 'a'.repeat(64) },
      cwd: dir,
      isTTY: false,
      now: () => new Date(),
    };
    for (const args of [['init'], ['apply', '--auto-approve', '--concurrency', '16']]) {
      const code = await main(args, io);
      if (code !== 0) throw new Error(`datagrant ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`);
    }
    const store = await openStore(statePaths(join(dir, '.datagrant')), io.env);
    installation = await store.installation();
    await store.close();
  } else {
    await eachLimited(
      Array.from({ length: GROUPS }, (_, g) => g),
      IN_FLIGHT,
      async (g) => {
        await send(iam, new CreateGroupCommand({ GroupName: `g${g}`, Path: '/datagrant/' }));
        const statements = groupDatasets(g).flatMap((i) => grant(i, 'read'));
        const p = await iam.send(new CreatePolicyCommand({ PolicyName: `dg-group-g${g}`, Path: '/datagrant/', PolicyDocument: doc(statements) }));
        seedRequests++;
        await send(iam, new AttachGroupPolicyCommand({ GroupName: `g${g}`, PolicyArn: p.Policy!.Arn! }));
      },
    );
    await eachLimited(
      Array.from({ length: MANAGED }, (_, i) => i),
      IN_FLIGHT,
      async (i) => {
        await send(iam, new CreateUserCommand({ UserName: `user${i}`, Path: '/datagrant/' }));
        await send(iam, new PutUserPolicyCommand({ UserName: `user${i}`, PolicyName: 'dg-direct-grants', PolicyDocument: doc(grant(i % DATASETS, 'write')) }));
        await send(iam, new AddUserToGroupCommand({ GroupName: `g${i % GROUPS}`, UserName: `user${i}` }));
        await send(iam, new CreateAccessKeyCommand({ UserName: `user${i}` }));
      },
    );
  }
  // Access made by hand: users on whole datasets, parts of them and other prefixes; roles.
  await eachLimited(
    Array.from({ length: OTHERS }, (_, i) => i),
    IN_FLIGHT,
    async (i) => {
      const d = (i * 7) % DATASETS;
      const resource = [`arn:aws:s3:::${bucketOf(d)}/p${d}/*`, `arn:aws:s3:::${bucketOf(d)}/p${d}/sub/*`, `arn:aws:s3:::${bucketOf(d)}/elsewhere/*`][i % 3]!;
      await send(iam, new CreateUserCommand({ UserName: `other${i}` }));
      await send(
        iam,
        new PutUserPolicyCommand({
          UserName: `other${i}`,
          PolicyName: 'hand-made',
          PolicyDocument: doc([{ Effect: 'Allow', Action: 's3:GetObject', Resource: resource }]),
        }),
      );
    },
  );
  const rolePolicies: string[] = [];
  for (let k = 0; k < 10; k++) {
    const p = await iam.send(
      new CreatePolicyCommand({
        PolicyName: `bench-role-${k}`,
        PolicyDocument: doc([{ Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: `arn:aws:s3:::bench-${k}/*` }]),
      }),
    );
    seedRequests++;
    rolePolicies.push(p.Policy!.Arn!);
  }
  const trust = doc([{ Effect: 'Allow', Principal: { Service: 'glue.amazonaws.com' }, Action: 'sts:AssumeRole' }]);
  await eachLimited(
    Array.from({ length: ROLES }, (_, r) => r),
    IN_FLIGHT,
    async (r) => {
      await send(iam, new CreateRoleCommand({ RoleName: `role${r}`, AssumeRolePolicyDocument: trust }));
      const policy = r % 10 === 0 ? 'arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess' : rolePolicies[r % 10]!;
      await send(iam, new AttachRolePolicyCommand({ RoleName: `role${r}`, PolicyArn: policy }));
    },
  );
  const seedS = (performance.now() - seedStart) / 1000;
  console.log(
    SEED === 'apply'
      ? `  seed: datagrant apply of a ${MANAGED}-principal spec, then the rest by the SDK (${IN_FLIGHT} in flight): ${seedS.toFixed(1)} s`
      : `  seed: IAM/S3 SDK, ${IN_FLIGHT} in flight, enforcement off: ${seedS.toFixed(1)} s, ${seedRequests} requests (${(seedRequests / seedS).toFixed(0)}/s)`,
  );

  await moto.enableAuth();
  // readAccess as a user gets it: the factory's driver, decorated, through the counting proxy.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: moto.admin.accessKeyId,
    AWS_SECRET_ACCESS_KEY: moto.admin.secretAccessKey,
    AWS_REGION: moto.region,
    AWS_ENDPOINT_URL: proxy.endpoint,
  });
  const backends = makeBackends({ backends: { aws: { type: 'aws' } } }, installation ? { installation } : {});
  proxy.reset();
  gaadPages = 0;
  const t0 = performance.now();
  const reading = await backends.aws!.readAccess!({ datasets });
  const readS = (performance.now() - t0) / 1000;
  await closeBackends(backends);
  const sent = proxy.count();
  const bound = 1 + gaadPages + 2 + BUCKETS;
  const unmanaged = new Set(reading.rows.filter((r) => !r.holder.managed).map((r) => r.holder.id)).size;
  console.log(
    `  readAccess (factory driver): ${readS.toFixed(1)} s, ${reading.requests} requests (${sent} at moto); bound 1 STS + ${gaadPages} GAAD page + 2 credential report + ${BUCKETS} buckets = ${bound} ` +
      `(target: within the bound, seconds) — ${reading.rows.length} rows, ${unmanaged} unmanaged holders, ${reading.usage.length} keys, ${reading.limits.length} limits`,
  );
  if (reading.requests > bound) throw new Error(`readAccess sent ${reading.requests} requests, over its bound of ${bound}`);

  // The evaluation alone, on the same documents read once more.
  const aws = new AwsConnection({ name: 'aws', iamPath: '/datagrant/', region: moto.region, endpoint: moto.endpoint, credentials: moto.admin });
  const docs = await readAccessDocuments(aws, { datasets });
  aws.close();
  const t1 = performance.now();
  const { rows } = effectiveAccess({ backend: 'aws', ...docs, now: new Date() });
  const evalS = (performance.now() - t1) / 1000;
  console.log(
    `  evaluation alone (effective.ts, ${MANAGED + OTHERS + ROLES} principals × ${DATASETS} datasets): ${evalS.toFixed(2)} s, ${rows.length} rows (target: seconds)`,
  );

  // What `datagrant access` does with the reading: set it beside the spec, then render it.
  const { spec } = parseSpec(specText(), { file: 'datagrant.yaml', env: {}, now: new Date() });
  const t2 = performance.now();
  const report = accessReport({ spec, specHash: 'bench', specFile: 'datagrant.yaml', now: new Date(), readings: { aws: reading }, sessions: [] });
  const mergeS = (performance.now() - t2) / 1000;
  const t3 = performance.now();
  const sizes = [renderAccessText(report), renderAccessCsv(report), renderAccessHtml(report)].map((t) => t.length);
  const renderS = (performance.now() - t3) / 1000;
  const both = report.rows.filter((r) => r.status === 'both').length;
  console.log(
    `  report: merged with the spec's ${MANAGED} principals in ${mergeS.toFixed(2)} s (${report.rows.length} rows, ${both} as the spec says); table, CSV and HTML rendered in ${renderS.toFixed(2)} s (${(sizes[2]! / 1e6).toFixed(1)} MB of HTML) (target: seconds)`,
  );
} finally {
  iam.destroy();
  s3.destroy();
  await proxy.close();
  await moto.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
