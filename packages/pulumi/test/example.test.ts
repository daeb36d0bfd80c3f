// GIVEN examples/pulumi, WHEN its program runs as an ES module under Pulumi's mock runtime, THEN it
// creates the seed's resources and exports the key as a secret. A separate Node process, loading
// TypeScript with tsx as the example's Pulumi.yaml does, so module resolution is the real one.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('examples/pulumi runs and creates the seed: user, inline policy, key; the secret exported as a secret', () => {
  const out = execFileSync(
    process.execPath,
    // datagrant-source: load the component from its TypeScript sources, no build needed.
    ['--import', 'tsx', '--conditions', 'datagrant-source', 'packages/pulumi/test/fixtures/run-example.ts', `${root}examples/pulumi/index.ts`],
    { cwd: root, encoding: 'utf8', env: { ...process.env, NODE_NO_WARNINGS: '1' } },
  );
  const { registered, exports } = JSON.parse(out) as {
    registered: { type: string; name: string; inputs: Record<string, unknown> }[];
    exports: Record<string, { value: string; secret: boolean }>;
  };
  expect(registered.map((r) => `${r.type} ${r.name}`).sort()).toEqual(
    [
      'datagrant:index:DataAccessUser ai-model-data-reader',
      'aws:iam/user:User ai-model-data-reader-user-data-scientist',
      'aws:iam/userPolicy:UserPolicy ai-model-data-reader-inline-data-scientist-dg-direct-grants',
      'aws:iam/accessKey:AccessKey ai-model-data-reader-key-data-scientist',
    ].sort(),
  );
  const policy = registered.find((r) => r.type === 'aws:iam/userPolicy:UserPolicy')!;
  expect(policy.inputs).toMatchObject({ name: 'dg-direct-grants', user: 'data-scientist' });
  expect(JSON.parse(policy.inputs.policy as string)).toEqual({
    Version: '2012-10-17',
    Statement: [
      { Effect: 'Allow', Action: ['s3:GetBucketLocation', 's3:ListBucket'], Resource: ['arn:aws:s3:::ai-model-data'] },
      { Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectVersion'], Resource: ['arn:aws:s3:::ai-model-data/*'] },
    ],
  });
  expect(exports.secretAccessKey).toEqual({ value: 'the-secret', secret: true });
  expect(exports.userName).toEqual({ value: 'data-scientist', secret: false });
  expect(exports.policyName).toEqual({ value: 'dg-direct-grants', secret: false });
  expect(Object.keys(exports).sort()).toEqual(['accessKeyId', 'policyName', 'secretAccessKey', 'userName']);
});
