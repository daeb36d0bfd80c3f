import { CreateAccessKeyCommand, CreateUserCommand, GetUserCommand, ListUserTagsCommand, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { createAwsBackend } from '../../src/backends/aws/driver.js';
import { iamAs, startMoto } from '../support/moto.js';
import { describeBackendContract } from './backend-contract.js';

describeBackendContract('aws', async () => {
  const moto = await startMoto({ auth: true, managedPolicies: false });
  const iam = iamAs(moto, moto.admin);
  await iam.send(new CreateUserCommand({ UserName: 'outsider', Path: '/', Tags: [{ Key: 'team', Value: 'ops' }] }));
  const snapshot = async () =>
    JSON.stringify([
      (await iam.send(new GetUserCommand({ UserName: 'outsider' }))).User,
      (await iam.send(new ListUserTagsCommand({ UserName: 'outsider' }))).Tags,
    ]);
  const before = await snapshot();
  return {
    name: 'aws',
    backend: createAwsBackend({ name: 'aws', iamPath: '/datagrant/', region: moto.region, endpoint: moto.endpoint, credentials: moto.admin }),
    spec: `version: 1
backends: { aws: { type: aws } }
datasets:
  data: { backend: aws, bucket: ai-model-data, prefix: training/ }
  art: { backend: aws, bucket: ai-model-artifacts }
groups: { readers: { grants: [{ dataset: data, access: read }] } }
principals:
  alice: { type: person, groups: [readers] }
  trainer: { type: service, groups: [readers], grants: [{ dataset: art, access: write }] }
`,
    // An operator allowed to read IAM but not to change it: every write is refused.
    async lacking() {
      await iam.send(new CreateUserCommand({ UserName: 'read-only-operator', Path: '/' }));
      await iam.send(
        new PutUserPolicyCommand({
          UserName: 'read-only-operator',
          PolicyName: 'read-only',
          PolicyDocument: JSON.stringify({
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Action: ['iam:Get*', 'iam:List*', 'iam:GenerateCredentialReport', 'sts:GetCallerIdentity'], Resource: '*' }],
          }),
        }),
      );
      const key = (await iam.send(new CreateAccessKeyCommand({ UserName: 'read-only-operator' }))).AccessKey!;
      return {
        backend: createAwsBackend({
          name: 'aws',
          iamPath: '/datagrant-lacking/',
          region: moto.region,
          endpoint: moto.endpoint,
          credentials: { accessKeyId: key.AccessKeyId!, secretAccessKey: key.SecretAccessKey! },
        }),
        spec: `version: 1
backends: { aws: { type: aws, iamPath: /datagrant-lacking/ } }
datasets: { data: { backend: aws, bucket: ai-model-data, prefix: training/ } }
principals: { bob: { type: service, grants: [{ dataset: data, access: read }] } }
`,
      };
    },
    async outsideUnchanged() {
      if ((await snapshot()) !== before) throw new Error('the IAM user outside the path changed');
    },
    async cleanup() {
      iam.destroy();
      await moto.stop();
    },
  };
});
