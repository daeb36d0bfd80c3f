import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { SpecError, type SpecProblem } from '../../src/core/errors.js';
import { parseSpec, type LoadOptions } from '../../src/spec/load.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
const opts = (over: Partial<LoadOptions> = {}): LoadOptions => ({ file: 'datagrant.yaml', env: {}, now: NOW, ...over });

/** The problems a spec is rejected with; fails the test when it loads. */
function problemsOf(text: string, over: Partial<LoadOptions> = {}): SpecProblem[] {
  try {
    parseSpec(text, opts(over));
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return (e as SpecError).problems;
  }
  throw new Error('spec loaded, but problems were expected');
}

const MINIMAL = `version: 1
backends:
  aws: { type: aws }
datasets:
  data: { backend: aws, bucket: ai-model-data }
`;

describe('a valid spec', () => {
  test('the DESIGN.md draft loads, with ${VAR} substituted from the passed environment', () => {
    // GIVEN the draft and an environment holding the one variable it names
    const text = fixture('draft.yaml');
    // WHEN
    const { spec, notices } = parseSpec(text, opts({ env: { WAREHOUSE_URL: 'postgres://db.example/analytics' } }));
    // THEN
    expect(notices).toEqual([]);
    expect(spec.backends.warehouse).toEqual({ type: 'postgres', url: 'postgres://db.example/analytics' });
    expect(spec.backends.aws).toEqual({ type: 'aws', region: 'us-east-1' });
    expect(spec.datasets['training-data']).toEqual({ backend: 'aws', bucket: 'ai-model-data', prefix: 'training/' });
    expect(spec.groups['ml-researchers']!.grants).toEqual([
      { dataset: 'training-data', access: 'read' },
      { dataset: 'features', access: 'read' },
    ]);
    expect(spec.principals.alice).toEqual({ type: 'person', email: 'alice@example.com', groups: ['ml-researchers'], grants: [] });
    expect(spec.principals.trainer).toMatchObject({
      type: 'service',
      groups: [],
      rotate: '90d',
      grants: [
        { dataset: 'model-artifacts', access: 'write' },
        { dataset: 'training-data', access: 'read', expires: '2027-01-31' },
      ],
    });
  });

  test.each(['/datagrant/', '/ml/datagrant/', '/team-a_b.c@d=e,f+g/'])('iamPath %s is accepted', (iamPath) => {
    const text = MINIMAL.replace('type: aws', `type: aws, iamPath: "${iamPath}"`);
    expect(parseSpec(text, opts()).spec.backends.aws).toEqual({ type: 'aws', iamPath });
  });

  test('only ${NAME} is interpolated; text around it is kept', () => {
    const text = `${MINIMAL.replace('aws: { type: aws }', 'aws: { type: aws, region: "eu-${R}-1" }')}`;
    const { spec } = parseSpec(text, opts({ env: { R: 'west' } }));
    expect(spec.backends.aws).toEqual({ type: 'aws', region: 'eu-west-1' });
  });

  test.each([
    ['a date', '2027-01-31'],
    ['an instant in UTC', '2027-01-31T12:00:00Z'],
    ['an instant with an offset and fraction', '2027-01-31T12:00:00.5+02:00'],
    ['a leap day', '2028-02-29'],
  ])('expires may be %s', (_what, expires) => {
    const text = `${MINIMAL}principals:\n  p:\n    type: service\n    grants: [{ dataset: data, access: read, expires: "${expires}" }]\n`;
    expect(parseSpec(text, opts()).spec.principals.p!.grants[0]!.expires).toBe(expires);
  });
});

describe('a spec with many problems', () => {
  // Every problem in the fixture, in source order, with its exact position. Nothing is hidden
  // behind another: a bad name still has its body checked, a shape error still lets references,
  // case clashes and dates be checked.
  const expected: [string, string, RegExp][] = [
    ['3:40', 'backends.aws.colour', /^unknown key "colour"; allowed: type, region, iamPath, endpoint, timeouts, quotas, assumeRole$/],
    ['4:37', 'backends.warehouse.url', /^environment variable WAREHOUSE_URL is not set/],
    ['7:22', 'datasets.orphan.backend', /^backend "nowhere" is not defined; defined backends: aws, warehouse$/],
    ['8:24', 'datasets.s3-on-pg.backend', /has a bucket, so it needs an aws or rgw backend, but backend "warehouse" is postgres/],
    ['9:24', 'datasets.pg-on-s3.backend', /has a database, so it needs a postgres backend, but backend "aws" is aws/],
    ['10:39', 'datasets.Bad_Bucket.bucket', /not a valid S3 bucket name \(3-63 lowercase letters.*\(got "Not_A_Bucket"\)$/],
    ['11:3', '', /^duplicate key "training-data": each key may appear only once/],
    ['15:49', 'groups.ml.grants[0].extra', /^unknown key "extra"; allowed: dataset, access, expires$/],
    ['16:20', 'groups.ml.grants[1].dataset', /^dataset "missing" is not defined; defined datasets: Bad_Bucket, orphan, pg-on-s3, s3-on-pg, training-data$/],
    ['16:37', 'groups.ml.grants[1].access', /^access "readwrite" is not a level; allowed: read, write, admin$/],
    ['20:18', 'principals.alice.groups[1]', /^group "nogroup" is not defined; defined groups: ml$/],
    [
      '22:58',
      'principals.alice.grants[0].expires',
      /^is not a real date or time; expected a date \(2027-01-31\) or an ISO 8601 instant.*\(got "2027-13-45"\)$/,
    ],
    [
      '23:20',
      'principals.alice.grants[1].dataset',
      /^dataset "training-data" is granted twice in this list \(also on line 22\); keep one grant with the level you mean$/,
    ],
    ['23:59', 'principals.alice.grants[1].expires', /^must be a date \(2027-01-31\) or an ISO 8601 instant with a zone.*\(got "yesterday"\)$/],
    ['24:3', 'principals.Alice', /^principal "Alice" differs from "alice" only in case; AWS IAM treats them as the same user, so rename one$/],
    ['26:3', 'principals.bad name!', /^principal name may contain only letters, digits and \+ = , \. @ _ - .*\(got "bad name!"\)$/],
    ['27:11', 'principals.bad name!.type', /^type "robot" is not allowed; allowed: person, service$/],
    ['28:13', 'principals.bad name!.rotate', /^must be a duration such as 90d, 24h, 30m or 3600s \(got "90days"\)$/],
    [
      '29:3',
      `principals.p${'1234567890'.repeat(6)}1234`,
      /^principal name is 65 characters long; at most 64 are allowed \(got "p1234567890123456789012345678901234567890123456789…"\)$/,
    ],
    ['32:58', `principals.p${'1234567890'.repeat(6)}1234.grants[0].expires`, /^is not a real date or time.*\(got "2027-02-30"\)$/],
  ];

  const problems = problemsOf(fixture('many-errors.yaml'), { file: 'specs/many-errors.yaml' });

  test('reports every problem at once, in source order, each at its exact line and column', () => {
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(expected.map(([pos, path]) => `${pos} ${path}`));
  });

  test.each(expected)('%s %s', (pos, path, message) => {
    const p = problems.find((x) => `${x.line}:${x.column}` === pos && x.path === path)!;
    expect(p.file).toBe('specs/many-errors.yaml');
    expect(p.message).toMatch(message);
  });

  test('the error text has one line per problem, file:line:column first, and no stack trace', () => {
    let error: SpecError | undefined;
    try {
      parseSpec(fixture('many-errors.yaml'), opts({ file: 'specs/many-errors.yaml' }));
    } catch (e) {
      error = e as SpecError;
    }
    const lines = error!.message.split('\n');
    expect(lines).toHaveLength(expected.length);
    for (const line of lines) expect(line).toMatch(/^specs\/many-errors\.yaml:\d+:\d+: /);
    expect(error!.message).not.toMatch(/\bat .*\.(ts|js):\d+|node_modules|Error:|ZodError|Invalid key in record|Too small/);
  });
});

describe('single problems', () => {
  const wrap = (principals: string) => `${MINIMAL}principals:\n${principals}`;
  test.each<[string, string, Partial<LoadOptions>, string, RegExp]>([
    [
      'an unknown top-level key',
      `${MINIMAL}princpals: {}\n`,
      {},
      '6:1 princpals',
      /^unknown key "princpals"; allowed: version, settings, backends, datasets, groups, principals, invariants, scim, knownAccess, approvers$/,
    ],
    [
      'an unknown key in a dataset',
      MINIMAL.replace('bucket: ai-model-data', 'bucket: ai-model-data, prefx: a/'),
      {},
      '5:48 datasets.data.prefx',
      /^unknown key "prefx"; allowed: backend, bucket, prefix, description, approvers$/,
    ],
    [
      'an unknown key in a postgres backend',
      MINIMAL.replace('aws: { type: aws }', 'aws: { type: aws }\n  wh: { type: postgres, url: "postgres://db/x", region: y }'),
      {},
      '4:49 backends.wh.region',
      /^unknown key "region"; allowed: type, url, scope, timeouts$/,
    ],
    [
      'an unknown key in a postgres dataset',
      MINIMAL.replace('aws: { type: aws }', 'aws: { type: aws }\n  wh: { type: postgres, url: "postgres://db/x" }').replace(
        'data: { backend: aws, bucket: ai-model-data }',
        'f: { backend: wh, database: a, schema: b, prefix: c }',
      ),
      {},
      '6:45 datasets.f.prefix',
      /^unknown key "prefix"; allowed: backend, database, schema, tables, description, approvers$/,
    ],
    [
      'an unknown key in a principal',
      wrap('  p:\n    type: person\n    emial: p@example.com\n'),
      {},
      '9:5 principals.p.emial',
      /^unknown key "emial"; allowed: type, email, description, groups, grants, rotate, credentials, maxSession, oidc$/,
    ],
    [
      'an unknown key in settings',
      `${MINIMAL}settings: { rotation: 90d }\n`,
      {},
      '6:13 settings.rotation',
      /^unknown key "rotation"; allowed: rotate, rotationGrace, credentials, maxSession, expireUnused, oidc, requests, console$/,
    ],
    [
      'a bad access level',
      wrap('  p:\n    type: person\n    grants: [{ dataset: data, access: owner }]\n'),
      {},
      '9:39 principals.p.grants[0].access',
      /^access "owner" is not a level; allowed: read, write, admin$/,
    ],
    [
      'a missing access level',
      wrap('  p:\n    type: person\n    grants: [{ dataset: data }]\n'),
      {},
      '9:14 principals.p.grants[0]',
      /^missing required key "access" \(read, write or admin\)$/,
    ],
    [
      'a bad rotate duration',
      wrap('  p:\n    type: person\n    rotate: 0d\n'),
      {},
      '9:13 principals.p.rotate',
      /^must be a duration such as 90d, 24h, 30m or 3600s \(got "0d"\)$/,
    ],
    [
      'credentials that are neither key nor temporary',
      wrap('  p:\n    type: person\n    credentials: sso\n'),
      {},
      '9:18 principals.p.credentials',
      /^credentials "sso" is not allowed; allowed: key \(a long-lived access key or password, rotated\), temporary \(short-lived sessions/,
    ],
    [
      'a session shorter than STS allows',
      wrap('  p:\n    type: person\n    credentials: temporary\n    maxSession: 5m\n'),
      {},
      '10:17 principals.p.maxSession',
      /^is too short; a session lasts from 15m to 12h \(900s to 43200s\), the bounds AWS STS allows \(got "5m"\)$/,
    ],
    [
      'a default session longer than STS allows',
      `${MINIMAL}settings: { credentials: temporary, maxSession: 13h }\n`,
      {},
      '6:49 settings.maxSession',
      /^is too long; a session lasts from 15m to 12h/,
    ],
    [
      'rotate on a temporary principal',
      wrap('  p:\n    type: person\n    credentials: temporary\n    rotate: 30d\n'),
      {},
      '10:13 principals.p.rotate',
      /^principal "p" has temporary credentials, which are never rotated: each session ends by itself after maxSession; remove rotate, or set credentials: key$/,
    ],
    [
      'rotate on a principal made temporary by the default',
      `${MINIMAL}settings: { credentials: temporary }\nprincipals:\n  p:\n    type: person\n    rotate: 30d\n`,
      {},
      '10:13 principals.p.rotate',
      /^principal "p" has temporary credentials \(settings.credentials\), which are never rotated/,
    ],
    [
      'maxSession on a principal with a key',
      wrap('  p:\n    type: person\n    maxSession: 2h\n'),
      {},
      '9:17 principals.p.maxSession',
      /^principal "p" has a long-lived key, so maxSession means nothing for it; set credentials: temporary, or remove maxSession$/,
    ],
    ['a bad rotationGrace', `${MINIMAL}settings: { rotationGrace: 1w }\n`, {}, '6:28 settings.rotationGrace', /^must be a duration .*\(got "1w"\)$/],
    ['a missing version', MINIMAL.replace('version: 1\n', ''), {}, '1:1 ', /^missing required key "version" \(the spec format version: 1\)$/],
    ['a wrong version', MINIMAL.replace('version: 1', 'version: 2'), {}, '1:10 version', /^version must be 1 \(got 2\)$/],
    ['an unknown backend type', MINIMAL.replace('type: aws', 'type: gcp'), {}, '3:16 backends.aws.type', /backend type must be one of: aws, postgres/],
    [
      'a dataset with neither bucket nor database',
      MINIMAL.replace('bucket: ai-model-data', 'path: x'),
      {},
      '5:9 datasets.data',
      /needs `backend` plus either `bucket`/,
    ],
    [
      'a prefix starting with /',
      MINIMAL.replace('bucket: ai-model-data', 'bucket: ai-model-data, prefix: /x'),
      {},
      '5:56 datasets.data.prefix',
      /^must not start with \/ \(a prefix is relative to the bucket: write training\/, not \/training\/\) \(got "\/x"\)$/,
    ],
    [
      'a group name IAM cannot hold',
      `${MINIMAL}groups:\n  "ml team": { grants: [] }\n`,
      {},
      '7:3 groups.ml team',
      /^group name may contain only .*\(got "ml team"\)$/,
    ],
    [
      'a group listed twice',
      wrap('  p:\n    type: person\n    groups: [g, g]\ngroups:\n  g: {}\n'),
      {},
      '9:17 principals.p.groups[1]',
      /^group "g" is listed twice$/,
    ],
    ['groups that differ only in case', `${MINIMAL}groups:\n  ml: {}\n  ML: {}\n`, {}, '8:3 groups.ML', /^group "ML" differs from "ml" only in case/],
    [
      'a scim mapping to an unknown group',
      `${MINIMAL}scim:\n  groups: { "Okta ML": ml }\n`,
      {},
      '7:24 scim.groups.Okta ML',
      /^group "ml" is not defined; defined groups: \(none defined\)$/,
    ],
    [
      'an invalid email',
      wrap('  p:\n    type: person\n    email: not-an-email\n'),
      {},
      '9:12 principals.p.email',
      /^is not a valid email address \(got "not-an-email"\)$/,
    ],
    ['a missing principal type', wrap('  p:\n    email: p@example.com\n'), {}, '7:3 principals.p', /^missing required key "type" \(person or service\)$/],
    [
      'a missing backend type',
      MINIMAL.replace('aws: { type: aws }', 'aws: { region: eu-west-1 }'),
      {},
      '3:3 backends.aws',
      /^missing required key "type" \(aws, postgres, rgw or mysql\)$/,
    ],
    [
      'groups given as text, not a list',
      wrap('  p:\n    type: person\n    groups: ml\n'),
      {},
      '9:13 principals.p.groups',
      /^must be a list \(for example \[a, b\]\), not text \(got "ml"\)$/,
    ],
    ['principals given as a list', `${MINIMAL}principals: [a, b]\n`, {}, '6:13 principals', /^must be a mapping \(name: value\), not a list$/],
    [
      'an impossible time of day',
      wrap('  p:\n    type: person\n    grants: [{ dataset: data, access: read, expires: "2027-01-31T25:00:00Z" }]\n'),
      {},
      '9:54 principals.p.grants[0].expires',
      /^is not a real date or time/,
    ],
    [
      'an iamPath without slashes',
      MINIMAL.replace('type: aws', 'type: aws, iamPath: datagrant'),
      {},
      '3:30 backends.aws.iamPath',
      /^must be a path below the root that starts and ends with \/ \(for example \/datagrant\/\).*\(got "datagrant"\)$/,
    ],
    [
      'the root as iamPath (it would own the whole account)',
      MINIMAL.replace('type: aws', 'type: aws, iamPath: /'),
      {},
      '3:30 backends.aws.iamPath',
      /"\/" would make datagrant own every IAM user in the account$/,
    ],
    ['an iamPath with an empty segment', MINIMAL.replace('type: aws', 'type: aws, iamPath: //x/'), {}, '3:30 backends.aws.iamPath', /\(got "\/\/x\/"\)$/],
  ])('%s', (_what, text, over, where, message) => {
    const problems = problemsOf(text, over);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
    expect(problems[0]!.message).toMatch(message);
  });

  test('a missing ${VAR} is one problem, not also a complaint about the placeholder', () => {
    const text = MINIMAL.replace('bucket: ai-model-data', 'bucket: "${BUCKET}"');
    const problems = problemsOf(text);
    expect(problems).toEqual([
      { file: 'datagrant.yaml', line: 5, column: 33, path: 'datasets.data.bucket', message: expect.stringMatching(/^environment variable BUCKET is not set/) },
    ]);
    expect(parseSpec(text, opts({ env: { BUCKET: 'from-env' } })).spec.datasets.data).toEqual({ backend: 'aws', bucket: 'from-env' });
  });

  test('a value read from the environment is never echoed into an error', () => {
    const text = MINIMAL.replace('type: aws }', 'type: aws, endpoint: "${AWS_ENDPOINT}" }');
    const problems = problemsOf(text, { env: { AWS_ENDPOINT: 'user:s3cr3t-pass@not a url' } });
    expect(problems).toEqual([
      {
        file: 'datagrant.yaml',
        line: 3,
        column: 31,
        path: 'backends.aws.endpoint',
        message: 'must be an http(s) URL such as http://127.0.0.1:5000 (got "${AWS_ENDPOINT}", substituted from the environment)',
      },
    ]);
    expect(JSON.stringify(problems)).not.toContain('s3cr3t');
  });

  describe('an aws backend that assumes a role', () => {
    const ROLE = 'arn:aws:iam::222222222222:role/ops/datagrant';
    const AR = (r: string) => MINIMAL.replace('type: aws }', `type: aws, assumeRole: ${r} }`);

    test('the role, its external id from the environment, and the session name are read; the external id stays a template', () => {
      const { spec, templates } = parseSpec(AR(`{ roleArn: "${ROLE}", externalId: "\${EXT_ID}", sessionName: dg-prod }`), opts({ env: { EXT_ID: 'x-123' } }));
      expect(spec.backends.aws).toEqual({ type: 'aws', assumeRole: { roleArn: ROLE, externalId: 'x-123', sessionName: 'dg-prod' } });
      expect(templates).toEqual({ aws: { 'assumeRole.externalId': '${EXT_ID}' } });
    });

    test.each(['arn:aws-cn:iam::123456789012:role/datagrant', 'arn:aws-us-gov:iam::123456789012:role/a/b/c+=,.@_-'])('%s is accepted', (arn) => {
      expect(parseSpec(AR(`{ roleArn: "${arn}" }`), opts()).spec.backends.aws).toEqual({ type: 'aws', assumeRole: { roleArn: arn } });
    });

    test.each<[string, string, string, RegExp]>([
      [
        'a user ARN',
        '{ roleArn: "arn:aws:iam::222222222222:user/datagrant" }',
        '3:44 backends.aws.assumeRole.roleArn',
        /^must be an IAM role ARN: arn:<partition>:iam::<12-digit account id>:role\/<name>, .* \(got "arn:aws:iam::222222222222:user\/datagrant"\)$/,
      ],
      [
        'an account id of 11 digits',
        '{ roleArn: "arn:aws:iam::22222222222:role/x" }',
        '3:44 backends.aws.assumeRole.roleArn',
        /^must be an IAM role ARN.*\(got "arn:aws:iam::22222222222:role\/x"\)$/,
      ],
      [
        'another partition word',
        '{ roleArn: "arn:azure:iam::222222222222:role/x" }',
        '3:44 backends.aws.assumeRole.roleArn',
        /partition aws, aws-cn or aws-us-gov\) \(got/,
      ],
      [
        'a one-character external id',
        '{ roleArn: "arn:aws:iam::222222222222:role/x", externalId: a }',
        '3:92 backends.aws.assumeRole.externalId',
        /^must be 2 to 1224 .* \(got "a"\)$/,
      ],
      [
        'a session name with a space',
        '{ roleArn: "arn:aws:iam::222222222222:role/x", sessionName: "a b" }',
        '3:93 backends.aws.assumeRole.sessionName',
        /^must be 2 to 64 .* \(got "a b"\)$/,
      ],
      ['no role', '{ externalId: abc }', '3:21 backends.aws.assumeRole', /^missing required key "roleArn"/],
      [
        'an unknown key',
        '{ roleArn: "arn:aws:iam::222222222222:role/x", duration: 1h }',
        '3:80 backends.aws.assumeRole.duration',
        /^unknown key "duration"; allowed: roleArn, externalId, sessionName$/,
      ],
    ])('%s is refused with its position and what is allowed', (_what, role, where, message) => {
      const problems = problemsOf(AR(role));
      expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
      expect(problems[0]!.message).toMatch(message);
    });

    test('an external id read from the environment is not echoed into an error', () => {
      const problems = problemsOf(AR('{ roleArn: "arn:aws:iam::222222222222:role/x", externalId: "${EXT_ID}" }'), { env: { EXT_ID: 'bad id with spaces' } });
      expect(problems[0]!.message).toMatch(/\(got "\$\{EXT_ID\}", substituted from the environment\)$/);
      expect(JSON.stringify(problems)).not.toContain('bad id');
    });
  });

  describe('backend deadlines and the PostgreSQL url', () => {
    const WH = (b: string) => MINIMAL.replace('aws: { type: aws }', `aws: { type: aws }\n  wh: ${b}`);

    test('timeouts are read per backend', () => {
      const { spec } = parseSpec(
        WH('{ type: postgres, url: "postgresql://db.example/x", timeouts: { connect: 2s, request: 5m } }').replace(
          'type: aws }',
          'type: aws, timeouts: { request: 1h } }',
        ),
        opts(),
      );
      expect(spec.backends.wh).toEqual({ type: 'postgres', url: 'postgresql://db.example/x', timeouts: { connect: '2s', request: '5m' } });
      expect(spec.backends.aws).toEqual({ type: 'aws', timeouts: { request: '1h' } });
    });

    test.each<[string, string, string, RegExp]>([
      [
        'a deadline that is not a duration',
        '{ type: aws, timeouts: { connect: 10x } }',
        '4:41 backends.wh.timeouts.connect',
        /^must be a duration such as 10s, 2m or 1h \(got "10x"\)$/,
      ],
      [
        'a deadline past an hour',
        '{ type: aws, timeouts: { request: 61m } }',
        '4:41 backends.wh.timeouts.request',
        /^is too long; a deadline is at most 1h \(3600s\) \(got "61m"\)$/,
      ],
      [
        'a deadline of zero',
        '{ type: postgres, url: "postgres://h/x", timeouts: { connect: 0s } }',
        '4:69 backends.wh.timeouts.connect',
        /^must be a duration .*\(got "0s"\)$/,
      ],
      ['an unknown deadline', '{ type: aws, timeouts: { read: 5s } }', '4:32 backends.wh.timeouts.read', /^unknown key "read"; allowed: connect, request$/],
      [
        'an http url',
        '{ type: postgres, url: "http://admin:hunter22@db.example/x" }',
        '4:30 backends.wh.url',
        /^url must be a postgres:\/\/ or postgresql:\/\/ URL .* \(got a URL starting with http:\/\/\)$/,
      ],
      [
        'a file url',
        '{ type: postgres, url: "file:///var/run/db" }',
        '4:30 backends.wh.url',
        /^url must be a postgres:\/\/ or postgresql:\/\/ URL .* \(got a URL starting with file:\/\/\)$/,
      ],
      [
        'no URL at all',
        '{ type: postgres, url: "admin:hunter22 at db" }',
        '4:30 backends.wh.url',
        /^url must be a postgres:\/\/ or postgresql:\/\/ URL such as [^ ]+ \(or \$\{VAR\} to read it from the environment\)$/,
      ],
      [
        'an unparseable URL',
        '{ type: postgres, url: "postgres://admin:hunter22@db.example:port/x" }',
        '4:30 backends.wh.url',
        /^url is not a URL; it must be a postgres:\/\/ or postgresql:\/\/ URL/,
      ],
    ])('%s', (_what, backend, where, message) => {
      const problems = problemsOf(WH(backend));
      expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
      expect(problems[0]!.message).toMatch(message);
      expect(problems[0]!.message).not.toContain('hunter22');
    });

    test('the url is checked after ${VAR} substitution, and its password is never shown', () => {
      const text = WH('{ type: postgres, url: "${WH_URL}" }');
      const problems = problemsOf(text, { env: { WH_URL: 'http://admin:s3cr3t-pass@db.example:5432/x' } });
      expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(['4:30 backends.wh.url']);
      expect(problems[0]!.message).toMatch(/\(got a URL starting with http:\/\/\)$/);
      expect(JSON.stringify(problems)).not.toContain('s3cr3t');
      // and one that is a PostgreSQL URL passes
      expect(parseSpec(text, opts({ env: { WH_URL: 'postgres://admin:s3cr3t-pass@db.example:5432/x' } })).spec.backends.wh).toMatchObject({
        url: 'postgres://admin:s3cr3t-pass@db.example:5432/x',
      });
    });

    test('a missing ${VAR} in the url is one problem, not also a complaint that it is no URL', () => {
      const problems = problemsOf(WH('{ type: postgres, url: "${WH_URL}" }'));
      expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/^environment variable WH_URL is not set/)]);
    });
  });

  describe("an aws backend's account quotas", () => {
    const AWS = (quotas: string) => MINIMAL.replace('aws: { type: aws }', `aws: { type: aws, quotas: ${quotas} }`);

    test('are read as given; those left out are AWS defaults, applied by the compiler', () => {
      const { spec } = parseSpec(AWS('{ users: 4000, groups: 500, policies: 5000, roles: 1 }'), opts());
      expect(spec.backends.aws).toEqual({ type: 'aws', quotas: { users: 4000, groups: 500, policies: 5000, roles: 1 } });
      expect(parseSpec(AWS('{ policies: 2000 }'), opts()).spec.backends.aws).toEqual({ type: 'aws', quotas: { policies: 2000 } });
    });

    test.each<[string, string, string, string]>([
      [
        'users past the limit AWS never raises',
        '{ users: 5001 }',
        '3:38 backends.aws.quotas.users',
        'must be a whole number from 1 to 5000: AWS does not raise the quota of IAM users above 5,000 (got 5001)',
      ],
      [
        'groups past what AWS grants',
        '{ groups: 501 }',
        '3:39 backends.aws.quotas.groups',
        "must be a whole number from 1 to 500: AWS's quota of IAM groups is 300, raised on request up to 500 (got 501)",
      ],
      [
        'policies of zero',
        '{ policies: 0 }',
        '3:41 backends.aws.quotas.policies',
        "must be a whole number from 1 to 5000: AWS's quota of customer managed policies is 1,500, raised on request up to 5,000 (got 0)",
      ],
      [
        'a fraction',
        '{ roles: 2.5 }',
        '3:38 backends.aws.quotas.roles',
        "must be a whole number from 1 to 5000: AWS's quota of IAM roles is 1,000, raised on request up to 5,000 (got 2.5)",
      ],
      ['text', '{ users: many }', '3:38 backends.aws.quotas.users', 'must be a number, not text (got "many")'],
      ['an unknown quota', '{ buckets: 100 }', '3:31 backends.aws.quotas.buckets', 'unknown key "buckets"; allowed: users, groups, policies, roles'],
    ])('%s is refused at its position, with the value and what is allowed', (_what, quotas, where, message) => {
      const problems = problemsOf(AWS(quotas));
      expect(problems.map((p) => [`${p.line}:${p.column} ${p.path}`, p.message])).toEqual([[where, message]]);
    });

    test('a postgres backend has none', () => {
      const problems = problemsOf(
        `${MINIMAL.replace('aws: { type: aws }', 'aws: { type: aws }\n  wh: { type: postgres, url: "postgres://h/x", quotas: { users: 1 } }')}`,
      );
      expect(problems.map((p) => `${p.path}: ${p.message}`)).toEqual(['backends.wh.quotas: unknown key "quotas"; allowed: type, url, scope, timeouts']);
    });
  });

  test('a principal name of exactly 64 characters is fine; 65 is not', () => {
    const ok = `p${'x'.repeat(63)}`;
    expect(parseSpec(wrap(`  ${ok}:\n    type: person\n`), opts()).spec.principals[ok]).toBeDefined();
    const problems = problemsOf(wrap(`  ${ok}x:\n    type: person\n`));
    expect(problems.map((p) => p.message)).toEqual([expect.stringMatching(/^principal name is 65 characters long; at most 64 are allowed/)]);
  });

  test.each([
    ['a list', '- a\n- b\n', 'a list'],
    ['a scalar', 'hello\n', 'text'],
    ['empty', '', 'an empty document'],
  ])('a document that is %s is rejected with what a spec must be', (_what, text, kind) => {
    const problems = problemsOf(text);
    expect(problems).toEqual([
      {
        file: 'datagrant.yaml',
        line: 1,
        column: 1,
        path: '',
        message: `the spec must be a mapping with the keys version, backends, datasets, groups and principals, but it is ${kind}`,
      },
    ]);
  });

  test('invalid YAML is reported at its position and nothing else is attempted', () => {
    const problems = problemsOf('version: 1\nbackends: [\n');
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: 'datagrant.yaml', line: 3, column: 1, path: '' });
    expect(problems[0]!.message).toMatch(/^invalid YAML: /);
  });

  test("two YAML documents in one file: one problem, in the user's terms", () => {
    expect(problemsOf('version: 1\n---\nversion: 1\n')).toEqual([
      {
        file: 'datagrant.yaml',
        line: 2,
        column: 1,
        path: '',
        message: 'invalid YAML: the spec must be a single document; remove the second "---" and what follows, or merge it into the first',
      },
    ]);
  });

  test('Windows line endings do not shift positions', () => {
    const problems = problemsOf(`${MINIMAL}principals:\n  p: { type: person, grants: [{ dataset: nope, access: read }] }\n`.replace(/\n/g, '\r\n'));
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(['7:42 principals.p.grants[0].dataset']);
  });

  test('a problem reached through a YAML alias is reported where the alias is used, and where it is defined', () => {
    const text = `${MINIMAL}groups:\n  g:\n    grants: &common\n      - { dataset: nope, access: read }\nprincipals:\n  p: { type: person, grants: *common }\n`;
    expect(problemsOf(text).map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(['9:20 groups.g.grants[0].dataset', '11:30 principals.p.grants[0].dataset']);
  });

  test('a duplicate key names the key and does not stop other checks', () => {
    const problems = problemsOf(`${MINIMAL}  data: { backend: nope, bucket: other-bucket }\n`);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.message}`)).toEqual([
      expect.stringMatching(/^6:3 duplicate key "data": each key may appear only once in a mapping/),
      expect.stringMatching(/^6:20 backend "nope" is not defined/),
    ]);
  });
});

describe('expiry', () => {
  const spec = (expires: string) => `${MINIMAL}groups:\n  g:\n    grants:\n      - { dataset: data, access: write, expires: "${expires}" }\n`;

  test('an expired grant is not an error: it loads, with a warning that apply removes it', () => {
    const { spec: loaded, notices } = parseSpec(spec('2026-11-01'), opts());
    expect(loaded.groups.g!.grants).toEqual([{ dataset: 'data', access: 'write', expires: '2026-11-01' }]);
    expect(notices).toEqual([
      {
        level: 'warning',
        message:
          'datagrant.yaml:9:50: group g: write access to data expired at 2026-11-01T00:00:00.000Z; it grants nothing now and apply removes it (delete the grant from the spec to silence this warning)',
      },
    ]);
  });

  test('a grant expiring exactly now counts as expired; one a second later does not', () => {
    expect(parseSpec(spec('2026-11-28T00:00:00Z'), opts()).notices).toHaveLength(1);
    expect(parseSpec(spec('2026-11-28T00:00:01Z'), opts()).notices).toEqual([]);
  });
});

/** MINIMAL with its one dataset given `prefix` (written as a double-quoted YAML string). */
const withPrefix = (prefix: string) => MINIMAL.replace('bucket: ai-model-data', `bucket: ai-model-data, prefix: ${JSON.stringify(prefix)}`);

describe('prefixes: what lands in an IAM policy is exactly what was reviewed', () => {
  test.each<[string, string, Partial<LoadOptions>, RegExp]>([
    [
      'an IAM policy variable',
      'home/${aws:username}/',
      {},
      /^must not contain "\$\{": IAM reads \$\{\.\.\.\} in a policy as a variable .* \(got "home\/\$\{aws:username\}\/"\)$/,
    ],
    ['a policy variable with a slash in it', 't/${aws:PrincipalTag/team}', {}, /^must not contain "\$\{"/],
    ["IAM's own escape for a literal *", 'a/${*}/', {}, /^must not contain "\$\{"/],
    // ${VAR} is replaced before the check; what the environment supplies is checked, not echoed.
    [
      'a policy variable read from the environment',
      '${PREFIX}',
      { env: { PREFIX: 'home/${aws:userid}/' } },
      /^must not contain "\$\{".*\(got "\$\{PREFIX\}", substituted from the environment\)$/,
    ],
    [
      'the wildcard *',
      'logs/*/raw/',
      {},
      /^must not contain the wildcard \*: in an IAM resource it matches any characters and would widen the grant \(got "logs\/\*\/raw\/"\)$/,
    ],
    ['the wildcard ?', 'run-?/', {}, /^must not contain the wildcard \?/],
    ['a colon', 'at/2027-01-31T12:00/', {}, /^must not contain ":": S3-compatible servers split policy ARNs at ":"/],
    ['a plus', 'c++/', {}, /^must not contain "\+": some S3-compatible servers URL-decode policy resources/],
    ['a percent sign', 'a%2A/', {}, /^must not contain "%": .*"%2A" into the wildcard \*/],
    ['a tab', 'a\tb/', {}, /^must not contain the control character U\+0009: it is invisible in review/],
    ['a C1 control character', 'a\u0085b/', {}, /^must not contain the control character U\+0085/],
    ['a character IAM policies cannot hold', '数据/', {}, /^must not contain "数" \(U\+6570\): IAM policy documents hold only characters up to U\+00FF/],
    ['a character outside the BMP', 'x\u{1F600}/', {}, /^must not contain "\u{1F600}" \(U\+1F600\)/u],
  ])('%s is rejected at its position', (_what, prefix, over, message) => {
    const problems = problemsOf(withPrefix(prefix), over);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(['5:56 datasets.data.prefix']);
    expect(problems[0]!.message).toMatch(message);
  });

  test('a value from the environment that is rejected is never echoed', () => {
    const problems = problemsOf(withPrefix('${PREFIX}'), { env: { PREFIX: 's3cr3t/${aws:userid}/' } });
    expect(JSON.stringify(problems)).not.toContain('s3cr3t');
  });

  test.each(['training/', 'date=2027-01-31/', 'a b/', 'café/', '$HOME/', '{x}/', 'a&b\'(c)!~@,;<>[]^`|"#/', 'x$/{y}/'])(
    '%s is accepted as written',
    (prefix) => {
      expect(parseSpec(withPrefix(prefix), opts()).spec.datasets.data).toEqual({ backend: 'aws', bucket: 'ai-model-data', prefix });
    },
  );

  test('a prefix without a trailing / is allowed, with a warning naming what else it matches', () => {
    const { spec, notices } = parseSpec(withPrefix('training'), opts());
    expect(spec.datasets.data).toMatchObject({ prefix: 'training' });
    expect(notices).toEqual([
      {
        level: 'warning',
        message:
          'datagrant.yaml:5:56: dataset data: prefix "training" does not end with "/", so it also matches "training-old/" and "trainingX"; write "training/" for a folder',
      },
    ]);
    expect(parseSpec(withPrefix('training/'), opts()).notices).toEqual([]);
  });
});

describe('durations are at most 10 years', () => {
  const settings = (s: string) => `${MINIMAL}settings: { ${s} }\n`;
  const principal = (rotate: string) => `${MINIMAL}principals:\n  p: { type: service, rotate: ${rotate} }\n`;
  test.each([
    ['rotationGrace in settings', settings('rotationGrace: 3000000000h'), '6:28 settings.rotationGrace', '3000000000h'],
    ['rotate in settings', settings('rotate: 3651d'), '6:21 settings.rotate', '3651d'],
    ['rotate of a principal', principal('87601h'), '7:31 principals.p.rotate', '87601h'],
    ['a number too large for arithmetic', principal('9'.repeat(400) + 's'), '7:31 principals.p.rotate', `${'9'.repeat(50)}…`],
  ])('%s past the limit is rejected at its position', (_what, text, where, shown) => {
    const problems = problemsOf(text);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
    expect(problems[0]!.message).toBe(`is too long; a duration is at most 10 years (3650d, 87600h) (got ${JSON.stringify(shown)})`);
  });

  test.each(['3650d', '87600h', '5256000m', '315360000s'])('%s, exactly 10 years, is accepted', (d) => {
    expect(parseSpec(settings(`rotate: ${d}, rotationGrace: ${d}`), opts()).spec.settings).toEqual({ rotate: d, rotationGrace: d });
  });
});

describe('names that would silently vanish, and values that are not numbers', () => {
  test.each([
    ['a principal', `${MINIMAL}principals:\n  __proto__: { type: person }\n`, '7:3 principals.__proto__'],
    ['a group', `${MINIMAL}groups:\n  __proto__: { grants: [] }\n`, '7:3 groups.__proto__'],
    ['a dataset', `${MINIMAL}  __proto__: { backend: aws, bucket: other-bucket }\n`, '6:3 datasets.__proto__'],
    ['a backend', MINIMAL.replace('aws: { type: aws }', 'aws: { type: aws }\n  __proto__: { type: aws }'), '4:3 backends.__proto__'],
    ['an IdP group in scim.groups', `${MINIMAL}groups:\n  ml: {}\nscim:\n  groups: { __proto__: ml }\n`, '9:13 scim.groups.__proto__'],
  ])('__proto__ as %s is rejected, not dropped', (_what, text, where) => {
    const problems = problemsOf(text);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
    expect(problems[0]!.message).toBe('the key "__proto__" is not allowed: it cannot be held as a name, and the entry would silently vanish; rename it');
  });

  test.each([
    ['.nan', '.nan'],
    ['.inf', '.inf'],
    ['-.Inf', '-.inf'],
  ])('version: %s says what it got, not that it came from the environment', (yaml, shown) => {
    expect(problemsOf(MINIMAL.replace('version: 1', `version: ${yaml}`))).toEqual([
      { file: 'datagrant.yaml', line: 1, column: 10, path: 'version', message: `version must be 1 (got ${shown})` },
    ]);
  });

  test('IdP group names that differ only in case are one IdP group', () => {
    const problems = problemsOf(`${MINIMAL}groups:\n  a: {}\n  b: {}\nscim:\n  groups:\n    ML Team: a\n    ml team: b\n`);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(['12:5 scim.groups.ml team']);
    expect(problems[0]!.message).toMatch(/^IdP group "ml team" differs from "ML Team" only in case; IdP groups are matched ignoring case/);
  });
});

describe('YAML aliases', () => {
  test.each([
    [
      'an alias without an anchor',
      `${MINIMAL}groups:\n  g: { grants: *nope }\n`,
      '7:16 groups.g.grants',
      /^alias \*nope names no anchor; define &nope above its first use$/,
    ],
    [
      'an alias used before its anchor',
      `${MINIMAL}groups:\n  g: { grants: *later }\n  h: { grants: &later [] }\n`,
      '7:16 groups.g.grants',
      /^alias \*later names no anchor/,
    ],
    [
      'an alias inside the value it names',
      `${MINIMAL}groups:\n  g: &loop\n    grants: [{ dataset: data, access: read, nested: *loop }]\n`,
      '8:53 groups.g.grants[0].nested',
      /^alias \*loop is inside the value &loop names \(line 7\), so that value would contain itself without end/,
    ],
  ])('%s is reported at its position', (_what, text, where, message) => {
    const problems = problemsOf(text);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
    expect(problems[0]!.message).toMatch(message);
  });

  test('aliases that expand past the limit (a "billion laughs") are reported where the largest copy is made', () => {
    // GIVEN nine levels, each nine copies of the one above: 9^9 values from a dozen lines
    const levels = ['  l0: &l0 [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      levels.push(
        `  l${i}: &l${i} [${Array(9)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    const text = `${MINIMAL}x-bomb:\n${levels.join('\n')}\n`;
    // WHEN
    const problems = problemsOf(text);
    // THEN one problem, at the first alias of the last level, before anything is expanded
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual(['15:12 x-bomb.l8[0]']);
    expect(problems[0]!.message).toMatch(/^YAML aliases expand the spec to \d+ values, more than the 1000000 allowed .* this \*l7 alone is \d+ values/);
  });

  test('one anchor used by many principals is fine (yaml would refuse past 100 uses)', () => {
    const people = Array.from({ length: 300 }, (_, i) => `  p${i}: { type: person, grants: *common }`).join('\n');
    const text = `${MINIMAL}groups:\n  g:\n    grants: &common [{ dataset: data, access: read }]\nprincipals:\n${people}\n`;
    const { spec } = parseSpec(text, opts());
    expect(spec.principals.p299!.grants).toEqual([{ dataset: 'data', access: 'read' }]);
  });
});

describe('PostgreSQL names are checked when the spec is validated', () => {
  const PG = `version: 1
backends:
  aws: { type: aws }
  wh: { type: postgres, url: postgres://db.example/x }
datasets:
  s3: { backend: aws, bucket: ai-model-data }
  pg: { backend: wh, database: analytics, schema: features }
`;
  const dataset = (fields: string) => PG.replace('database: analytics, schema: features', fields);
  test.each([
    [
      'a database name over 63 bytes',
      dataset(`database: ${'é'.repeat(32)}, schema: s`),
      '7:32 datasets.pg.database',
      /^is 64 bytes long; PostgreSQL identifiers hold at most 63 bytes/,
    ],
    [
      'a schema name with a NUL',
      dataset('database: d, schema: "a\\0b"'),
      '7:43 datasets.pg.schema',
      /^contains a NUL character, which PostgreSQL identifiers cannot hold/,
    ],
    ['a table name over 63 bytes', dataset(`database: d, schema: s, tables: [${'t'.repeat(64)}]`), '7:55 datasets.pg.tables[0]', /^is 64 bytes long/],
    [
      'a principal named pg_…',
      `${PG}principals:\n  pg_reader: { type: service, grants: [{ dataset: pg, access: read }] }\n`,
      '9:3 principals.pg_reader',
      /^principal name "pg_reader" starts with pg_, which PostgreSQL reserves for its own roles; it would be a role on backend wh: rename the principal$/,
    ],
    [
      'a group named public',
      `${PG}groups:\n  public: { grants: [{ dataset: pg, access: read, expires: 2020-01-01 }] }\n`,
      '9:3 groups.public',
      /^group name "public" is a role name PostgreSQL reserves; it would be a role on backend wh: rename the group$/,
    ],
    [
      'a group name over 63 bytes',
      `${PG}groups:\n  ${'g'.repeat(64)}: { grants: [{ dataset: pg, access: read }] }\n`,
      `9:3 groups.${'g'.repeat(64)}`,
      /^group name "g+" is 64 bytes long; PostgreSQL identifiers hold at most 63 bytes/,
    ],
    [
      'a principal in a postgres group with a name over 63 bytes',
      `${PG}groups:\n  team: { grants: [{ dataset: pg, access: read }] }\nprincipals:\n  ${'p'.repeat(64)}: { type: person, groups: [team] }\n`,
      `11:3 principals.${'p'.repeat(64)}`,
      /is 64 bytes long/,
    ],
    [
      'a principal and a group of one name on one backend',
      `${PG}groups:\n  same: { grants: [{ dataset: pg, access: read }] }\nprincipals:\n  same: { type: person, grants: [{ dataset: pg, access: write }] }\n`,
      '11:3 principals.same',
      /^principal "same" and group "same" would be one PostgreSQL role on backend wh \(groups and principals share one role namespace there\): rename one$/,
    ],
  ])('%s is rejected at its position', (_what, text, where, message) => {
    const problems = problemsOf(text);
    expect(problems.map((p) => `${p.line}:${p.column} ${p.path}`)).toEqual([where]);
    expect(problems[0]!.message).toMatch(message);
  });

  test.each([
    ['a dot in a database or schema name (it is part of the name)', dataset('database: x.y, schema: s.t')],
    [
      'pg_ and public as names that never become PostgreSQL roles',
      `${PG}groups:\n  public: { grants: [{ dataset: s3, access: read }] }\nprincipals:\n  pg_reader: { type: service, grants: [{ dataset: s3, access: read }] }\n`,
    ],
    [
      'a principal and a group of one name when only the group is on postgres',
      `${PG}groups:\n  same: { grants: [{ dataset: pg, access: read }] }\nprincipals:\n  same: { type: person, grants: [{ dataset: s3, access: read }] }\n`,
    ],
    ['63 bytes exactly', dataset(`database: ${'é'.repeat(31)}x, schema: s`)],
  ])('%s is accepted', (_what, text) => {
    expect(() => parseSpec(text, opts())).not.toThrow();
  });
});
