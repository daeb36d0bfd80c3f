import { createRgwBackend } from '../../src/backends/rgw/driver.js';
import { newKey, rgwFixture } from '../support/rgw.js';
import { describeBackendContract } from './backend-contract.js';

describeBackendContract('rgw', async () => {
  const fx = rgwFixture('contract');
  await fx.makeBucket('data', ['training/a.txt']);
  await fx.makeBucket('art', ['model.bin']);
  // Made by hand beside datagrant's: one outside the prefix, one inside it without datagrant's mark.
  const outsider = fx.extraUser(`${fx.run}outsider`);
  const lookalike = `${fx.prefix}lookalike`;
  for (const uid of [outsider, lookalike]) {
    await fx.admin.admin('PUT', '/admin/user', { uid, 'display-name': 'made by hand' }, 'test: a hand-made user');
    await fx.admin.admin('PUT', '/admin/user', { caps: '', uid, 'user-caps': 'usage=read' }, 'test: a cap');
  }
  const snapshot = async () => JSON.stringify([await fx.user(outsider), await fx.user(lookalike)]);
  const before = await snapshot();
  const env = { RGW_KEY_ID: fx.rgw.admin.accessKeyId, RGW_SECRET: fx.rgw.admin.secretAccessKey };
  const backendYaml = (prefix: string) =>
    `{ type: rgw, endpoint: "${fx.rgw.endpoint}", accessKeyId: "\${RGW_KEY_ID}", secretAccessKey: "\${RGW_SECRET}", userPrefix: ${prefix} }`;
  return {
    name: 'onprem',
    backend: createRgwBackend({ name: 'onprem', endpoint: fx.rgw.endpoint, credentials: fx.rgw.admin, userPrefix: fx.prefix }),
    env,
    spec: `version: 1
backends: { onprem: ${backendYaml(fx.prefix)} }
datasets:
  data: { backend: onprem, bucket: ${fx.bucket('data')}, prefix: training/ }
  art: { backend: onprem, bucket: ${fx.bucket('art')} }
groups: { readers: { grants: [{ dataset: data, access: read }] } }
principals:
  alice: { type: person, groups: [readers] }
  trainer: { type: service, groups: [readers], grants: [{ dataset: art, access: write }] }
`,
    // An admin allowed to manage users and keys but not user policies: every policy is refused.
    async lacking() {
      const uid = fx.extraUser(`${fx.run}lacking`);
      const key = newKey();
      await fx.admin.admin('PUT', '/admin/user', { uid, 'display-name': 'lacking operator', 'generate-key': 'false' }, 'test: lacking operator');
      await fx.admin.admin('PUT', '/admin/user', { caps: '', uid, 'user-caps': 'users=*;metadata=read' }, 'test: its caps');
      await fx.admin.admin('PUT', '/admin/user', { key: '', uid, 'access-key': key.accessKeyId, 'secret-key': key.secretAccessKey }, 'test: its key');
      const prefix = `${fx.prefix}lacking-`;
      return {
        backend: createRgwBackend({ name: 'onprem', endpoint: fx.rgw.endpoint, credentials: key, userPrefix: prefix }),
        env: { RGW_KEY_ID: key.accessKeyId, RGW_SECRET: key.secretAccessKey },
        spec: `version: 1
backends: { onprem: ${backendYaml(prefix)} }
datasets: { data: { backend: onprem, bucket: ${fx.bucket('data')}, prefix: training/ } }
principals: { bob: { type: service, grants: [{ dataset: data, access: read }] } }
`,
      };
    },
    async outsideUnchanged() {
      if ((await snapshot()) !== before) throw new Error('a hand-made user (outside the prefix, or inside it without the mark) changed');
    },
    cleanup: () => fx.cleanup(),
  };
});
