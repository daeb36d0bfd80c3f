// The roles of temporary principals trust the identity datagrant runs as; never the account root,
// which as a Principal means everyone in the account who may assume roles.
import { expect, test } from 'vitest';
import type { AwsConnection } from '../../src/backends/aws/connection.js';
import { trustedPrincipal } from '../../src/backends/aws/trust.js';

const as = (arn: string) => ({ name: 'aws', caller: async () => ({ arn, account: '123456789012', partition: 'aws' }) }) as unknown as AwsConnection;

test('datagrant running as the account root is refused, naming why', async () => {
  await expect(trustedPrincipal(as('arn:aws:iam::123456789012:root'))).rejects.toThrow(
    /datagrant runs as the account root \(arn:aws:iam::123456789012:root\); the roles of temporary principals would trust everyone/,
  );
});

test('an IAM user of its own is trusted by its ARN', async () => {
  expect(await trustedPrincipal(as('arn:aws:iam::123456789012:user/datagrant/provisioner'))).toBe('arn:aws:iam::123456789012:user/datagrant/provisioner');
});
