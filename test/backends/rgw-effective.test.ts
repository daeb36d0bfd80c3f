// Effective access on RGW, as pure logic, for what the real gateway test does not set up: ACL grants
// to every user or to anyone, a READ-only grant, a system user, a subuser that may only write, and
// dg-boundary's `NotResource` beside an empty `Resource`, which RGW applies and IAM never writes.
// The rest is proved on a real gateway (test/e2e/rgw-effective-access.test.ts).
import { describe, expect, test } from 'vitest';
import { effectiveAccess, rgwUserArn, type RgwAccessFacts, type RgwUserFact } from '../../src/backends/rgw/effective.js';

const user = (uid: string, o: Partial<RgwUserFact> = {}): RgwUserFact => ({
  uid,
  system: false,
  suspended: false,
  caps: [],
  keys: [],
  policies: {},
  subusers: [],
  ours: false,
  ...o,
});
const doc = (...Statement: object[]) => JSON.stringify({ Version: '2012-10-17', Statement });
const facts = (f: Partial<RgwAccessFacts>): RgwAccessFacts => ({
  backend: 'onprem',
  users: [],
  buckets: [{ bucket: 'b', owner: 'own', policy: null, acl: [] }],
  datasets: [{ name: 'd', bucket: 'b', prefix: 'p/' }],
  now: new Date('2026-12-01T00:00:00Z'),
  ...f,
});
const summary = (r: ReturnType<typeof effectiveAccess>) => r.rows.map((x) => `${x.holder.id} ${x.level}: ${x.paths.map((p) => p.via).join(' | ')}`);

describe('RGW effective access from admin-API facts', () => {
  test('ACL grants to every user and to anyone: write and admin; READ alone lists keys only and is named', () => {
    const r = effectiveAccess(
      facts({
        users: [user('own')],
        buckets: [
          {
            bucket: 'b',
            owner: 'own',
            policy: null,
            acl: [
              { user: 'own', flags: 15 },
              { group: 'AuthenticatedUsers', flags: 2 },
              { group: 'AllUsers', flags: 1 },
            ],
          },
        ],
      }),
    );
    expect(summary(r).filter((s) => !s.startsWith('own '))).toEqual([
      'AuthenticatedUsers write: ACL of bucket b: WRITE (may write and delete its objects)',
      'AuthenticatedUsers admin: ACL of bucket b: WRITE (may write and delete its objects)',
    ]);
    expect(r.limits).toContain('bucket ACL grants of READ let their grantees list the keys of a bucket, not read its objects, and are not shown: b (AllUsers)');
  });

  test('a system user is admin everywhere; a subuser that may write has no read row', () => {
    const r = effectiveAccess(
      facts({
        users: [
          user('own'),
          user('sys', { system: true }),
          user('w', {
            subusers: [{ id: 'w:up', permissions: 'write' }],
            policies: { mine: doc({ Effect: 'Allow', Action: ['s3:GetObject', 's3:PutObject'], Resource: ['arn:aws:s3:::b/p/*'] }) },
          }),
        ],
      }),
    );
    expect(summary(r).filter((s) => s.startsWith('sys ') || s.startsWith('w'))).toEqual([
      'w read: inline policy mine of user w',
      'w write: inline policy mine of user w',
      "w:up write: subuser of w (permissions write), with its user's access",
      'sys admin: system user: may act as any user',
    ]);
  });

  test("dg-boundary's NotResource beside an empty Resource denies what lies outside it", () => {
    const boundary = doc({ Effect: 'Deny', Action: ['s3:*'], Resource: [], NotResource: ['arn:aws:s3:::elsewhere', 'arn:aws:s3:::elsewhere/*'] });
    const r = effectiveAccess(
      facts({
        users: [
          user('dg-a', {
            ours: true,
            principal: 'a',
            policies: { 'dg-boundary': boundary, hand: doc({ Effect: 'Allow', Action: ['s3:GetObject'], Resource: ['arn:aws:s3:::b/*'] }) },
          }),
        ],
      }),
    );
    expect(r.rows.filter((x) => x.holder.id === 'dg-a')).toEqual([]);
    expect(rgwUserArn('tenant$bob')).toBe('arn:aws:iam::tenant:user/bob');
  });
});
