// The aws driver handles exactly the kinds of the AWS model: its handler table has one handler per
// kind, and a table that lacks one does not compile (the `@ts-expect-error` lines below are checked
// by `npx tsc -p tsconfig.json`, which type-checks this file: were the table to accept a missing or
// mismatched handler, the directive itself would be the error). A change the model does not know —
// from a saved plan file, which is data — is refused with its address before any request is sent.
import { afterAll, beforeAll, describe, expect, expectTypeOf, test } from 'vitest';
import { createAwsBackend, handlers } from '../../src/backends/aws/driver.js';
import type { HandlerTable } from '../../src/backends/aws/kinds/handler.js';
import { BackendError } from '../../src/core/errors.js';
import type { Change, Resource } from '../../src/core/types.js';
import { AWS_KINDS } from '../../src/model/aws.js';
import { startBlackHole, type BlackHole } from '../support/black-hole.js';

// Type-level: the table is exhaustive, and each handler is of its own kind.
expectTypeOf(handlers).toExtend<HandlerTable>();
const { key: _key, ...withoutKey } = handlers;
// @ts-expect-error -- no handler for `key`
const _missing = withoutKey satisfies HandlerTable;
// @ts-expect-error -- a user handler cannot handle keys
const _mismatched = { ...handlers, key: handlers.user } satisfies HandlerTable;

describe('the handler table', () => {
  test('has one handler for every kind of the AWS model, and none for anything else', () => {
    expect(Object.keys(handlers).sort()).toEqual([...AWS_KINDS].sort());
    expect([...AWS_KINDS].sort()).toEqual(['attachment', 'group', 'inline-policy', 'key', 'membership', 'policy', 'role', 'user']);
  });
});

describe('a change the AWS model does not know is refused before any request', () => {
  // GIVEN a driver whose endpoint accepts connections and never answers: a request would be seen
  let hole: BlackHole;
  beforeAll(async () => {
    hole = await startBlackHole();
  });
  afterAll(async () => hole?.close());

  const resource = (kind: string, name: string, attrs: Resource['attrs']): Resource => ({
    address: `aws:${kind}/${name}`,
    backend: 'aws',
    kind,
    name,
    attrs,
    deps: [],
  });
  const change = (action: Change['action'], before: Resource | null, after: Resource | null, kind = (after ?? before)?.kind ?? 'user'): Change => ({
    address: (after ?? before)?.address ?? `aws:${kind}/alice`,
    backend: 'aws',
    kind,
    action,
    before,
    after,
    drift: false,
    reason: 'saved plan',
  });
  const alice = resource('user', 'alice', { path: '/datagrant/', tags: { 'datagrant:managed': 'true' } });

  test.each([
    [
      'a kind no aws backend has',
      change('create', null, resource('database', 'alice', { login: true })),
      'UnknownKind',
      /^aws: aws:database\/alice: refused: unknown kind "database" \(an aws backend has: user, group, role, policy, .*\); datagrant makes no such change: make the plan again$/,
    ],
    [
      'a missing attribute',
      change('create', null, resource('key', 'alice', { status: 'Active' })),
      'MalformedResource',
      /aws:key\/alice: refused: the key in "after" has no user \(allowed: a non-empty string\)/,
    ],
    [
      'an attribute of the wrong type',
      change('create', null, resource('attachment', 'user/alice/p', { entity: 'bucket', entityName: 'alice', policy: 'p' })),
      'MalformedResource',
      /aws:attachment\/user\/alice\/p: refused: the attachment in "after" has entity "bucket" \(allowed: "user", "group" or "role"\)/,
    ],
    [
      'an attribute the kind does not have',
      change('create', null, resource('user', 'alice', { path: '/datagrant/', tags: {}, admin: true })),
      'MalformedResource',
      /aws:user\/alice: refused: the user in "after" has attribute admin, which no user has/,
    ],
    [
      'tags that are not strings',
      change('update', alice, resource('user', 'alice', { path: '/datagrant/', tags: { team: 7 } })),
      'MalformedResource',
      /aws:user\/alice: refused: the user in "after" has tags \{"team":7\} \(allowed: an object of strings\)/,
    ],
    [
      'a before of another kind',
      change('delete', resource('group', 'alice', { path: '/datagrant/' }), null, 'user'),
      'MalformedChange',
      /aws:group\/alice: refused: the change is of kind user, its "before" of kind group/,
    ],
    ['a create without its object', change('create', null, null), 'MalformedChange', /aws:user\/alice: refused: a create needs "after"/],
    ['a delete that also has an object after it', change('delete', alice, alice), 'MalformedChange', /aws:user\/alice: refused: a delete takes no "after"/],
    [
      'an unknown action',
      { ...change('create', null, alice), action: 'upsert' } as unknown as Change,
      'MalformedChange',
      /aws:user\/alice: refused: unknown action "upsert"/,
    ],
  ])('%s', async (_, c, code, message) => {
    const driver = createAwsBackend({
      name: 'aws',
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${hole.port}`,
      iamPath: '/datagrant/',
      credentials: { accessKeyId: 'AKIATEST', secretAccessKey: 'test' },
      deadlines: { connectMs: 500, requestMs: 500 },
    });
    const accepted = hole.accepted;
    // WHEN the change is executed
    const err = await driver.execute(c).catch((e: unknown) => e);
    // THEN it is refused, naming the address and what is wrong, and nothing was sent
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ backend: 'aws', code, retryable: false, address: c.address });
    expect((err as Error).message).toMatch(message);
    expect(driver.stats().requests).toBe(0);
    expect(hole.accepted).toBe(accepted);
    await driver.close();
  });
});
