// The seed program, with datagrant's component: one IAM user with an access key, allowed to read
// the `ai-model-data` bucket (s3:GetObject and s3:ListBucket, as datagrant's `read` level) and
// nothing else; the key is exported as an encrypted secret.
import { DataAccessUser } from '@datagrant/pulumi';

const access = new DataAccessUser('ai-model-data-reader', {
  userName: 'data-scientist',
  email: 'data-scientist@example.com',
  bucket: 'ai-model-data',
});

export const userName = access.userName;
export const accessKeyId = access.accessKeyId;
// A Pulumi secret: `pulumi stack output secretAccessKey --show-secrets` reveals it.
export const secretAccessKey = access.secretAccessKey;
// The user's inline policy (`dg-direct-grants`), as `datagrant apply` makes it for one grant.
export const policyName = access.policy.name;

// The same objects from a whole spec file (the one `datagrant apply` reads) instead:
//
//   import { DataAccess } from '@datagrant/pulumi';
//   const team = new DataAccess('team', { specFile: 'datagrant.yaml' });
//   export const credentials = team.principals;   // per principal; secret keys stay secret
