// `datagrant access` on moto as an operator runs it: a key principal and a temporary principal
// (whose access is its access-set role's) read back as the spec says; the account's own
// administrator is access datagrant does not manage, accepted only through knownAccess.
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { AccessReport } from '../../src/model/access.js';
import type { Workspace } from '../support/cli.js';
import { startMoto, type Moto } from '../support/moto.js';
import { apply, initWorkspace, useMotoAdmin } from './aws-support.js';

let moto: Moto;
let ws: Workspace;
const SPEC = `version: 1
backends: { aws: { type: aws } }
datasets:
  training: { backend: aws, bucket: ai-model-data, prefix: training/ }
principals:
  alice: { type: person, email: alice@example.com, grants: [{ dataset: training, access: write }] }
  carol: { type: person, email: carol@example.com, credentials: temporary, grants: [{ dataset: training, access: read }] }
`;

beforeAll(async () => {
  moto = await startMoto({ auth: true, managedPolicies: false });
  useMotoAdmin(moto);
  ws = await initWorkspace(SPEC);
  await apply(ws);
});
afterAll(async () => {
  ws?.cleanup();
  await moto?.stop();
});

test("a temporary principal's access is its access-set role's, and reads back as the spec says", async () => {
  const r = await ws.run('access', '--format', 'json');
  expect(r.code, r.stderr).toBe(0);
  const report = JSON.parse(r.stdout) as AccessReport;
  const mine = report.rows.filter((x) => x.managed).map((x) => `${x.who} ${x.level} ${x.status}`);
  expect(mine.sort()).toEqual(['alice read both', 'alice write both', 'carol read both']);
  expect(report.rows.find((x) => x.who === 'carol')!.actual[0]!.via).toMatch(/^sessions of role\/dg-s-[0-9a-f]{12}: /);
  // The one other holder is moto's administrator: not datagrant's, a difference until accepted.
  const others = [...new Set(report.rows.filter((x) => !x.managed).map((x) => x.holder!.id))];
  expect(others).toEqual([expect.stringMatching(/^arn:aws:iam::\d{12}:user\/moto-admin$/)]);
  expect((await ws.run('access', '--detailed-exitcode')).code).toBe(2);
  ws.writeSpec(`${SPEC}knownAccess:\n  emulator-admin: { backend: aws, holders: ["${others[0]}"], access: admin, reason: the emulator's administrator }\n`);
  const clean = await ws.run('access', '--detailed-exitcode');
  expect(clean.code, clean.stdout + clean.stderr).toBe(0);
});
