// settings.oidc and principals' oidc entries: what a spec may say about trusted issuers, and how a
// verified token's claim names exactly one principal.
import { describe, expect, test } from 'vitest';
import { formatProblem, SpecError, type SpecProblem } from '../../src/core/errors.js';
import { parseSpec } from '../../src/spec/load.js';
import { matchPrincipal, oidcIndex } from '../../src/spec/oidc.js';

const NOW = new Date('2026-11-28T00:00:00Z');
const load = (text: string) => parseSpec(text, { file: 'datagrant.yaml', env: {}, now: NOW });

function problemsOf(text: string): string[] {
  try {
    load(text);
  } catch (e) {
    expect(e).toBeInstanceOf(SpecError);
    return (e as SpecError).problems.map((p: SpecProblem) => formatProblem(p));
  }
  throw new Error('spec loaded, but problems were expected');
}

const spec = (settings: string, principals: string) => `version: 1
settings:
${settings}
backends:
  aws: { type: aws }
principals:
${principals}
`;

const CORP = `  oidc:
    - { name: corp, issuer: "https://login.example.com", audience: datagrant }
    - { name: ci, issuer: "https://token.actions.example.com", audience: datagrant, claim: sub }`;

describe('settings.oidc', () => {
  test('an issuer gets the defaults: claim email, verified emails only, no algorithm list (RS256, ES256, PS256, EdDSA at verification)', () => {
    const { spec: s } = load(spec(CORP, '  alice: { type: person, email: alice@example.com }'));
    expect(s.settings!.oidc).toEqual([
      { name: 'corp', issuer: 'https://login.example.com', audience: 'datagrant', claim: 'email', unverifiedEmail: 'refuse' },
      { name: 'ci', issuer: 'https://token.actions.example.com', audience: 'datagrant', claim: 'sub', unverifiedEmail: 'refuse' },
    ]);
  });

  test.each(['http://localhost:9000', 'http://127.0.0.1:9000/realms/x', 'http://[::1]:9000'])('http is allowed on the loopback host of %s', (issuer) => {
    const { spec: s } = load(spec(`  oidc: [{ name: local, issuer: "${issuer}", audience: datagrant }]`, '  a: { type: service }'));
    expect(s.settings!.oidc![0]!.issuer).toBe(issuer);
  });

  test.each([
    ['http://login.example.com', 'must be an https:// URL'],
    ['http://127.0.0.1.example.com', 'must be an https:// URL'],
    ['ftp://login.example.com', 'must be an https:// URL'],
    ['login.example.com', 'is not a URL'],
    ['https://login.example.com/?tenant=a', 'must not have a query or fragment'],
    ['https://login.example.com/#x', 'must not have a query or fragment'],
    ['https://user:pw@login.example.com', 'must not hold a user name or password'],
  ])('issuer %s is refused: %s', (issuer, why) => {
    const problems = problemsOf(spec(`  oidc: [{ name: corp, issuer: "${issuer}", audience: datagrant }]`, '  a: { type: service }'));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^datagrant\.yaml:3:\d+: settings\.oidc\[0\]\.issuer: /);
    expect(problems[0]).toContain(why);
    expect(problems[0]).toContain(`(got ${JSON.stringify(issuer)})`);
  });

  test.each(['none', 'HS256', 'HS512', 'RSA1_5'])('algorithm %s is refused, naming what is allowed', (alg) => {
    const problems = problemsOf(
      spec(`  oidc: [{ name: corp, issuer: "https://login.example.com", audience: datagrant, algorithms: [ES256, ${alg}] }]`, '  a: { type: service }'),
    );
    expect(problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^datagrant\\.yaml:3:\\d+: settings\\.oidc\\[0\\]\\.algorithms\\[1\\]: algorithm "${alg}" is not allowed; allowed: RS256, .*EdDSA, Ed25519 \\(never none or HS256/384/512`,
        ),
      ),
    ]);
  });

  test('an empty algorithm list is refused', () => {
    const problems = problemsOf(
      spec(`  oidc: [{ name: corp, issuer: "https://login.example.com", audience: datagrant, algorithms: [] }]`, '  a: { type: service }'),
    );
    expect(problems).toEqual([expect.stringContaining('settings.oidc[0].algorithms: algorithms must name at least one algorithm')]);
  });

  test('an unknown key names the allowed ones', () => {
    const problems = problemsOf(
      spec(`  oidc: [{ name: corp, issuer: "https://login.example.com", audience: datagrant, secret: x }]`, '  a: { type: service }'),
    );
    expect(problems).toEqual([expect.stringContaining('settings.oidc[0].secret: unknown key "secret"; allowed: name, issuer, audience, claim, algorithms')]);
  });

  test('two issuers with one name, and one issuer configured twice, are refused where the second one is', () => {
    const problems = problemsOf(
      spec(
        `  oidc:
    - { name: corp, issuer: "https://login.example.com", audience: datagrant }
    - { name: corp, issuer: "https://other.example.com", audience: datagrant }
    - { name: corp2, issuer: "https://login.example.com", audience: other }`,
        '  a: { type: service }',
      ),
    );
    expect(problems).toEqual([
      'datagrant.yaml:5:15: settings.oidc[1].name: issuer name "corp" is used twice (also settings.oidc[0]); principals and the audit log refer to an issuer by its name, so each needs its own',
      'datagrant.yaml:6:30: settings.oidc[2].issuer: issuer "https://login.example.com" is configured twice (also settings.oidc[0]); a token is matched to its entry by its iss claim, so keep one entry per issuer',
    ]);
  });
});

describe("principals' oidc entries", () => {
  test('an entry for an issuer that is not configured is refused at its key', () => {
    const problems = problemsOf(
      spec(
        CORP,
        `  deployer:
    type: service
    oidc: { gitlab: "project_path:ml/train:ref_type:branch:ref:main" }`,
      ),
    );
    expect(problems).toEqual([
      'datagrant.yaml:11:13: principals.deployer.oidc.gitlab: issuer "gitlab" is not defined under settings.oidc; defined issuers: ci, corp',
    ]);
  });

  test('an entry is refused too when no issuer is configured at all, even when another part of the spec is malformed', () => {
    const problems = problemsOf(`version: 1
backends:
  aws: { type: aws }
principals:
  deployer: { type: service, oidc: { ci: "repo:ml/train" }, grants: [{ dataset: d, access: sometimes }] }
`);
    expect(problems).toContain(
      'datagrant.yaml:5:38: principals.deployer.oidc.ci: issuer "ci" is not defined under settings.oidc; defined issuers: (none defined)',
    );
  });

  test('two people with one email (ignoring case) are refused for an email issuer, at the second', () => {
    const problems = problemsOf(
      spec(
        CORP,
        `  alice: { type: person, email: alice@example.com }
  alice2: { type: person, email: Alice@Example.com }`,
      ),
    );
    expect(problems).toEqual([
      'datagrant.yaml:10:34: principals.alice2.email: principal "alice2" and principal "alice" would both be named by an ID token from issuer "corp" whose email (compared ignoring case) is "Alice@Example.com"; a token must name exactly one principal: correct the value, or give one of them its own oidc: { corp: <value> }',
    ]);
  });

  test("an explicit entry that is another person's email is refused", () => {
    const problems = problemsOf(
      spec(
        CORP,
        `  alice: { type: person, email: alice@example.com }
  bob: { type: person, email: bob@example.com, oidc: { corp: ALICE@example.com } }`,
      ),
    );
    expect(problems).toEqual([
      expect.stringMatching(/^datagrant\.yaml:10:\d+: principals\.bob\.oidc\.corp: principal "bob" and principal "alice" would both be named/),
    ]);
  });

  test('two services with one subject are refused; subjects compare exactly', () => {
    const problems = problemsOf(
      spec(
        CORP,
        `  train: { type: service, oidc: { ci: "repo:ml/train" } }
  train2: { type: service, oidc: { ci: "repo:ml/train" } }
  train3: { type: service, oidc: { ci: "repo:ML/train" } }`,
      ),
    );
    expect(problems).toEqual([
      expect.stringContaining(
        'principals.train2.oidc.ci: principal "train2" and principal "train" would both be named by an ID token from issuer "ci" whose sub is "repo:ml/train"',
      ),
    ]);
  });

  test('without settings.oidc, people sharing an email are no concern of validation', () => {
    expect(() =>
      load(`version: 1
backends: { aws: { type: aws } }
principals:
  alice: { type: person, email: alice@example.com }
  alice2: { type: person, email: alice@example.com }
`),
    ).not.toThrow();
  });
});

describe('matching a verified claim to a principal', () => {
  const { spec: s } = load(
    spec(
      CORP,
      `  alice: { type: person, email: Alice@Example.com }
  bob: { type: person, email: bob@example.com, oidc: { corp: robert@example.com } }
  mailbox: { type: service, email: team@example.com }
  train: { type: service, oidc: { ci: "repo:ml/train:ref:refs/heads/main" } }`,
    ),
  );
  const issuers = s.settings!.oidc!;
  const [corp, ci] = issuers as [(typeof issuers)[0], (typeof issuers)[0]];
  const index = oidcIndex(issuers, s.principals);

  test.each([
    ['a person by email, ignoring case', 'corp', 'alice@example.COM', 'alice'],
    ['a person by an explicit entry', 'corp', 'robert@example.com', 'bob'],
    ['a service by its subject', 'ci', 'repo:ml/train:ref:refs/heads/main', 'train'],
  ])('%s', (_what, issuer, value, principal) => {
    expect(matchPrincipal(index, issuer === 'corp' ? corp : ci, value)).toEqual({ ok: true, principal });
  });

  test.each([
    ["a person's email, when an explicit entry replaces it", 'corp', 'bob@example.com'],
    ["a service's email (only people are matched by email)", 'corp', 'team@example.com'],
    ['a subject that differs in case', 'ci', 'repo:ML/train:ref:refs/heads/main'],
    ['an email on the subject issuer (its claim is sub, not email)', 'ci', 'alice@example.com'],
  ])('nothing for %s', (_what, issuer, value) => {
    expect(matchPrincipal(index, issuer === 'corp' ? corp : ci, value)).toEqual({ ok: false, reason: 'no-principal', principals: [] });
  });

  test("a value two principals share (a SCIM person with a spec principal's email) matches neither", () => {
    const merged = oidcIndex(issuers, { ...s.principals, alice_2: { type: 'person', email: 'alice@example.com' } });
    expect(matchPrincipal(merged, corp, 'alice@example.com')).toEqual({ ok: false, reason: 'ambiguous', principals: ['alice', 'alice_2'] });
  });
});

describe('settings.console', () => {
  test('must name an issuer of settings.oidc, at its value', () => {
    const problems = problemsOf(`version: 1
settings:
  oidc: [{ name: corp, issuer: "https://login.example.com", audience: datagrant }]
  console: { oidc: okta }
backends: { aws: { type: aws } }
`);
    expect(problems).toEqual([
      'datagrant.yaml:4:20: settings.console.oidc: issuer "okta" is not defined under settings.oidc, so no one could sign in to the console; defined issuers: corp',
    ]);
  });

  test('takes a client id of its own, and nothing it does not know', () => {
    const ok = load(`version: 1
settings:
  oidc: [{ name: corp, issuer: "https://login.example.com", audience: datagrant }]
  console: { oidc: corp, clientId: datagrant-console }
backends: { aws: { type: aws } }
`);
    expect(ok.spec.settings?.console).toEqual({ oidc: 'corp', clientId: 'datagrant-console' });
    expect(
      problemsOf(`version: 1
settings:
  oidc: [{ name: corp, issuer: "https://login.example.com", audience: datagrant }]
  console: { oidc: corp, clientSecret: hunter2 }
backends: { aws: { type: aws } }
`)[0],
    ).toMatch(/^datagrant\.yaml:4:\d+: settings\.console.*clientSecret/);
  });
});
