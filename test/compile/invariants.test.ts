// The invariant checker, on both sides: the spec's intended access (what plan refuses) and the
// access the backends hold (what `access` reports), where a holder datagrant does not manage is
// judged like any other and is a member of no group.
import { describe, expect, test } from 'vitest';
import { actualFacts, assertSpecInvariants, checkInvariants, intendedFacts, InvariantError } from '../../src/compile/invariants.js';
import type { Level } from '../../src/core/types.js';
import type { AccessHolder, AccessPath, AccessReportRow, ActualAccess } from '../../src/model/access.js';
import { parseSpec } from '../../src/spec/load.js';
import type { Spec } from '../../src/spec/schema.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const load = (text: string) => parseSpec(text, { file: 'datagrant.yaml', env: {}, now: NOW });

/** The messages of what the spec's own grants break. */
function intended(text: string, now = NOW): string[] {
  const { spec, source } = load(text);
  return checkInvariants(spec, intendedFacts(spec, now, source), now).map((v) => v.message);
}

// Lines are numbered for the positions the messages name.
const BASE = `version: 1
backends:
  aws: { type: aws }
  wh: { type: postgres, url: "postgres://dg@localhost/db" }
datasets:
  hr-private: { backend: aws, bucket: hr-data }
  features: { backend: aws, bucket: feature-data }
  models: { backend: aws, bucket: model-data }
  salaries: { backend: wh, database: hr, schema: salaries }
groups:
  hr:
    grants:
      - { dataset: hr-private, access: read }
  ml:
    grants:
      - { dataset: features, access: read }
principals:
  carol: { type: person, email: carol@example.com, groups: [hr] }
  bob:
    type: person
    groups: [ml]
    grants:
      - { dataset: hr-private, access: write, expires: 2026-07-01 }
  trainer:
    type: service
    grants:
      - { dataset: models, access: admin }
      - { dataset: features, access: admin }
      - { dataset: salaries, access: read, expires: 2026-01-01 }
`;

describe('onlyMembersOf / onlyPrincipals', () => {
  test("a grant to someone outside the group is named with the grant's place in the file", () => {
    expect(intended(`${BASE}invariants:\n  hr-private-stays-in-hr: { datasets: [hr-private], onlyMembersOf: [hr] }\n`)).toEqual([
      'invariant hr-private-stays-in-hr: principal bob gets write on hr-private through principals.bob.grants[0] (datagrant.yaml:23:9), and bob is not in group hr',
    ]);
  });

  test('a group grant names the group and its grant; every breaking grant is listed', () => {
    const text = `${BASE}invariants:\n  features-for-hr: { datasets: [features], onlyMembersOf: [hr] }\n`;
    expect(intended(text)).toEqual([
      'invariant features-for-hr: principal bob gets read on features through group ml: groups.ml.grants[0] (datagrant.yaml:16:9), and bob is not in group hr',
      'invariant features-for-hr: principal trainer gets admin on features through principals.trainer.grants[1] (datagrant.yaml:28:9), and trainer is not in group hr',
    ]);
  });

  test('onlyPrincipals admits the principals it names, beside the members of the groups', () => {
    const text = `${BASE}invariants:\n  features: { datasets: [features], onlyMembersOf: [ml], onlyPrincipals: [carol, trainer] }\n`;
    expect(intended(text)).toEqual([]);
    const narrower = `${BASE}invariants:\n  features: { datasets: [features], onlyMembersOf: [hr, ml], onlyPrincipals: [carol] }\n`;
    expect(intended(narrower)).toEqual([
      expect.stringMatching(/principal trainer gets admin on features .*, and trainer is neither in any of the groups hr, ml nor principal carol$/),
    ]);
  });

  test('access selects that level and those above it; without datasets, every dataset', () => {
    // Only trainer's admin grants and bob's write are selected at write; carol (read) is not.
    const text = `${BASE}invariants:\n  writers: { access: write, onlyPrincipals: [bob] }\n`;
    expect(intended(text).map((m) => m.replace(/ through .*/, ''))).toEqual([
      'invariant writers: principal trainer gets admin on models',
      'invariant writers: principal trainer gets admin on features',
    ]);
  });

  test('an expired grant grants nothing, so it breaks nothing', () => {
    expect(intended(`${BASE}invariants:\n  salaries: { datasets: [salaries], onlyMembersOf: [hr] }\n`)).toEqual([]);
  });

  test('type selects principals of that type only', () => {
    const text = `${BASE}invariants:\n  people-out-of-models: { type: person, datasets: [models, features], onlyMembersOf: [hr] }\n`;
    expect(intended(text)).toEqual([expect.stringMatching(/^invariant people-out-of-models: principal bob gets read on features /)]);
  });
});

describe('expiresWithin', () => {
  test('a grant with no end, or one that ends too late, is named; one within the bound is not', () => {
    const text = `${BASE}invariants:\n  write-expires: { access: write, expiresWithin: 90d }\n  write-expires-soon: { access: write, expiresWithin: 7d }\n`;
    expect(intended(text)).toEqual([
      'invariant write-expires: principal trainer gets admin on models through principals.trainer.grants[0] (datagrant.yaml:27:9), which does not expire; it must end within 90d (by 2026-08-30T00:00:00.000Z)',
      'invariant write-expires: principal trainer gets admin on features through principals.trainer.grants[1] (datagrant.yaml:28:9), which does not expire; it must end within 90d (by 2026-08-30T00:00:00.000Z)',
      'invariant write-expires-soon: principal bob gets write on hr-private through principals.bob.grants[0] (datagrant.yaml:23:9), which ends 2026-07-01T00:00:00.000Z, later than 7d from now (2026-06-08T00:00:00.000Z)',
      expect.stringMatching(/^invariant write-expires-soon: principal trainer gets admin on models .*which does not expire/),
      expect.stringMatching(/^invariant write-expires-soon: principal trainer gets admin on features .*which does not expire/),
    ]);
  });

  test('the bound is measured from now', () => {
    const text = `${BASE}invariants:\n  people-write-expires: { type: person, access: write, expiresWithin: 30d }\n`;
    expect(intended(text, new Date('2026-06-01T00:00:00Z'))).toEqual([]);
    expect(intended(text, new Date('2026-05-31T23:59:59Z'))).toEqual([expect.stringMatching(/principal bob gets write on hr-private .*later than 30d/)]);
  });
});

describe('maxDatasets', () => {
  test('counts datasets, not grants, and names each one with its grant', () => {
    const text = `${BASE}invariants:\n  admin-spread: { access: admin, maxDatasets: 1 }\n  no-one-reads-features: { datasets: [features], maxDatasets: 0 }\n`;
    expect(intended(text)).toEqual([
      'invariant admin-spread: principal trainer gets admin on 2 datasets, more than the 1 allowed: models through principals.trainer.grants[0] (datagrant.yaml:27:9); features through principals.trainer.grants[1] (datagrant.yaml:28:9)',
      'invariant no-one-reads-features: principal bob gets read or more on 1 dataset, more than the 0 allowed: features through group ml: groups.ml.grants[0] (datagrant.yaml:16:9)',
      expect.stringMatching(
        /^invariant no-one-reads-features: principal trainer gets read or more on 1 dataset, more than the 0 allowed: features through principals\.trainer\.grants\[1\]/,
      ),
    ]);
  });

  test('a dataset reached through a group and a direct grant is one dataset', () => {
    const text = `${BASE.replace('groups: [hr] }', 'groups: [hr], grants: [{ dataset: hr-private, access: write }] }')}invariants:\n  one-each: { maxDatasets: 1 }\n`;
    // carol reads hr-private through hr and writes it directly: one dataset, within the bound.
    expect(intended(text)).toEqual([
      expect.stringMatching(
        /^invariant one-each: principal bob gets read or more on 2 datasets, more than the 1 allowed: hr-private through .*; features through /,
      ),
      expect.stringMatching(/^invariant one-each: principal trainer gets read or more on 2 datasets/),
    ]);
  });
});

describe('require', () => {
  test('a person without an email is named where the file defines it', () => {
    const text = `${BASE}invariants:\n  people-have-email: { type: person, require: [email] }\n  services-say-why: { type: service, require: [description] }\n`;
    expect(intended(text)).toEqual([
      'invariant people-have-email: principal bob (datagrant.yaml:19:3) has no email',
      'invariant services-say-why: principal trainer (datagrant.yaml:24:3) has no description',
    ]);
  });

  test('with a dataset or level named, only the holders of that access are asked', () => {
    const text = `${BASE}invariants:\n  hr-readers-have-email: { datasets: [hr-private], require: [email] }\n  admins-described: { access: admin, require: [description, email] }\n`;
    expect(intended(text)).toEqual([
      'invariant hr-readers-have-email: principal bob (datagrant.yaml:19:3) has no email',
      'invariant admins-described: principal trainer (datagrant.yaml:24:3) has no description and no email',
    ]);
  });

  test('a SCIM person is a principal like any other, and said to be one', () => {
    const { spec, source } = load(`${BASE}invariants:\n  people-have-email: { type: person, require: [email] }\nscim: { groups: { HR: hr } }\n`);
    const merged: Spec = { ...spec, principals: { jdoe: { type: 'person', groups: ['hr'], grants: [] }, ...spec.principals } };
    expect(checkInvariants(merged, intendedFacts(merged, NOW, source), NOW).map((v) => v.message)).toEqual([
      'invariant people-have-email: principal jdoe (a SCIM person) has no email',
      'invariant people-have-email: principal bob (datagrant.yaml:19:3) has no email',
    ]);
  });
});

describe('assertSpecInvariants', () => {
  test('throws every violation at once, each with its invariant; a spec without invariants is not checked', () => {
    const { spec, source } = load(`${BASE}invariants:\n  hr: { datasets: [hr-private], onlyMembersOf: [hr] }\n  email: { type: person, require: [email] }\n`);
    let error: unknown;
    try {
      assertSpecInvariants(spec, NOW, source);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvariantError);
    const violations = (error as InvariantError).violations;
    expect(violations.map((v) => [v.invariant, v.principal, v.dataset, v.level, v.source])).toEqual([
      ['hr', 'bob', 'hr-private', 'write', 'intended'],
      ['email', 'bob', undefined, undefined, 'intended'],
    ]);
    expect((error as Error).message.split('\n')).toEqual(violations.map((v) => v.message));
    expect(() => assertSpecInvariants(load(BASE).spec, NOW)).not.toThrow();
  });
});

// ---- the backends' side

const unmanagedUser: AccessHolder = { id: 'arn:aws:iam::123456789012:user/etl', kind: 'aws-user', name: 'etl', managed: false };
const managed = (principal: string): AccessHolder => ({
  id: `arn:aws:iam::123456789012:user/datagrant/${principal}`,
  kind: 'aws-user',
  name: principal,
  managed: true,
  principal,
});

function row(holder: AccessHolder | undefined, dataset: string, level: Level, actual: AccessPath[], backend = 'aws'): AccessReportRow {
  const who = holder?.principal ?? holder?.name ?? 'x';
  return {
    id: `${backend}|${dataset}|${level}|${who}`,
    backend,
    dataset,
    level,
    who,
    ...(holder?.principal ? { principal: holder.principal } : {}),
    ...(holder ? { holder } : {}),
    managed: holder?.managed ?? true,
    status: holder ? 'actual' : 'intended',
    intended: [],
    actual,
  };
}

function actual(text: string, rows: (AccessReportRow | ActualAccess)[]): string[] {
  const { spec } = load(text);
  return checkInvariants(spec, actualFacts(spec, rows), NOW).map((v) => v.message);
}

describe('facts from the access the backends hold', () => {
  const HR_ONLY = `${BASE}invariants:\n  hr-private-stays-in-hr: { datasets: [hr-private], onlyMembersOf: [hr] }\n`;

  test('an unmanaged IAM user is in no group: onlyMembersOf names it and the path it holds access through', () => {
    const inline = { via: 'inline policy etl-data of user etl' };
    // A reader's rows are cumulative: the write holder has a read row too, for the same path.
    const rows = [row(unmanagedUser, 'hr-private', 'read', [inline]), row(unmanagedUser, 'hr-private', 'write', [inline])];
    const { spec } = load(HR_ONLY);
    expect(checkInvariants(spec, actualFacts(spec, rows), NOW)).toEqual([
      {
        invariant: 'hr-private-stays-in-hr',
        message:
          'invariant hr-private-stays-in-hr: IAM user etl (not managed by datagrant) holds write on hr-private through inline policy etl-data of user etl, and etl is not in group hr',
        dataset: 'hr-private',
        level: 'write',
        source: 'actual',
      },
    ]);
  });

  test('a type selector takes in holders of unknown type: an unmanaged user with non-expiring write breaks people-write-expires', () => {
    const text = `${BASE}invariants:\n  people-write-expires: { type: person, access: write, expiresWithin: 90d }\n`;
    const inline = { via: 'inline policy etl-data of user etl' };
    const messages = actual(text, [row(unmanagedUser, 'hr-private', 'write', [inline])]);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/^invariant people-write-expires: IAM user etl \(not managed by datagrant\) holds write on hr-private/);
  });

  test('PUBLIC, anyone and a hand-made role are outsiders too; a member holding access through drift is not', () => {
    const rows: ActualAccess[] = [
      {
        backend: 'aws',
        dataset: 'hr-private',
        level: 'read',
        holder: { id: '*', kind: 'aws-anyone', name: '*', managed: false },
        paths: [{ via: 'bucket policy of hr-data, statement Public', conditions: ['aws:SourceIp'] }],
      },
      { backend: 'aws', dataset: 'hr-private', level: 'read', holder: managed('carol'), paths: [{ via: 'inline policy extra of user carol' }] },
      {
        backend: 'aws',
        dataset: 'hr-private',
        level: 'read',
        holder: { id: 'arn:aws:iam::123456789012:role/etl', kind: 'aws-role', name: 'role/etl', managed: false },
        paths: [{ via: 'inline policy p of role etl', partial: true }],
      },
      {
        backend: 'wh',
        dataset: 'hr-private',
        level: 'read',
        holder: { id: 'PUBLIC', kind: 'pg-public', name: 'PUBLIC', managed: false },
        paths: [{ via: 'GRANT SELECT ON hr.salaries TO PUBLIC' }],
      },
    ];
    expect(actual(HR_ONLY, rows)).toEqual([
      'invariant hr-private-stays-in-hr: anyone (Principal "*") holds read on hr-private through bucket policy of hr-data, statement Public (only when aws:SourceIp), and anyone is not in group hr',
      'invariant hr-private-stays-in-hr: IAM role role/etl (not managed by datagrant) holds read on hr-private through inline policy p of role etl, on part of the dataset, and role/etl is not in group hr',
      'invariant hr-private-stays-in-hr: PUBLIC (every PostgreSQL role, present and future) holds read on hr-private through GRANT SELECT ON hr.salaries TO PUBLIC, and PUBLIC is not in group hr',
    ]);
  });

  test("a group's own PostgreSQL role is a member of that group; another managed holder of no one principal is of none", () => {
    const role = (name: string): AccessHolder => ({ id: name, kind: 'pg-role', name, managed: true });
    const rows = [row(role('hr'), 'salaries', 'read', [{ via: 'GRANT SELECT ON salaries.pay TO hr' }], 'wh')];
    rows.push(row(role('ml'), 'salaries', 'read', [{ via: 'GRANT SELECT ON salaries.pay TO ml' }], 'wh'));
    const accessSet: AccessHolder = {
      id: 'arn:aws:iam::123456789012:role/datagrant/dg-s-0123456789ab',
      kind: 'aws-role',
      name: 'dg-s-0123456789ab',
      managed: true,
    };
    rows.push(row(accessSet, 'hr-private', 'read', [{ via: 'inline policy dg-direct-grants of role dg-s-0123456789ab' }]));
    const text = `${BASE}invariants:\n  salaries: { datasets: [salaries], onlyMembersOf: [hr] }\n  hr-private: { datasets: [hr-private], onlyMembersOf: [hr] }\n`;
    expect(actual(text, rows)).toEqual([
      'invariant salaries: the role of group ml holds read on salaries through GRANT SELECT ON salaries.pay TO ml, and ml is not in group hr',
      'invariant hr-private: IAM role dg-s-0123456789ab (made by datagrant, not for a single principal) holds read on hr-private through inline policy dg-direct-grants of role dg-s-0123456789ab, and dg-s-0123456789ab is not in group hr',
    ]);
  });

  test('an unmanaged holder is of unknown type (so every type selector takes it in), has no email, and no end unless the backend said one', () => {
    const rows = [
      row(unmanagedUser, 'models', 'admin', [{ via: 'inline policy all of user etl' }]),
      row(unmanagedUser, 'features', 'admin', [{ via: 'inline policy all of user etl', expires: '2026-06-05T00:00:00.000Z' }]),
    ];
    const text = `${BASE}invariants:
  people-write-expires: { type: person, access: write, expiresWithin: 90d }
  write-expires: { access: write, expiresWithin: 90d }
  admin-spread: { access: admin, maxDatasets: 1 }
  people-have-email: { type: person, require: [email] }
  everyone-has-email: { require: [email] }
`;
    expect(actual(text, rows)).toEqual([
      'invariant people-write-expires: IAM user etl (not managed by datagrant) holds admin on models through inline policy all of user etl, which does not expire; it must end within 90d (by 2026-08-30T00:00:00.000Z)',
      'invariant write-expires: IAM user etl (not managed by datagrant) holds admin on models through inline policy all of user etl, which does not expire; it must end within 90d (by 2026-08-30T00:00:00.000Z)',
      'invariant admin-spread: IAM user etl (not managed by datagrant) holds admin on 2 datasets, more than the 1 allowed: models through inline policy all of user etl; features through inline policy all of user etl',
      'invariant people-have-email: IAM user etl (not managed by datagrant) has no email',
      'invariant everyone-has-email: IAM user etl (not managed by datagrant) has no email',
    ]);
  });

  test("a managed principal is judged by the spec's groups and fields; rows only the spec has are no facts", () => {
    const rows = [
      row(managed('carol'), 'hr-private', 'read', [{ via: 'group hr (managed policy dg-group-hr)' }]),
      row(managed('bob'), 'hr-private', 'write', [{ via: 'inline policy dg-direct-grants of user bob', expires: '2026-07-01T00:00:00.000Z' }]),
      row(undefined, 'hr-private', 'read', []),
      row(managed('gone'), 'hr-private', 'read', [{ via: 'inline policy dg-direct-grants of user gone' }]),
    ];
    expect(actual(HR_ONLY, rows)).toEqual([
      'invariant hr-private-stays-in-hr: principal bob holds write on hr-private through inline policy dg-direct-grants of user bob, and bob is not in group hr',
      'invariant hr-private-stays-in-hr: principal gone (no longer in the spec) holds read on hr-private through inline policy dg-direct-grants of user gone, and gone is not in group hr',
    ]);
  });
});
