// Which principal a verified token names: an email names a person only when the token says it is
// verified — an IdP that sends no email_verified and lets users edit their address (Entra's
// "nOAuth") would otherwise let anyone be anyone — and emails compare in ASCII case only.
import { describe, expect, test } from 'vitest';
import { claimValueOf } from '../../src/serve/oidc.js';
import { claimKey } from '../../src/spec/oidc.js';
import type { OidcIssuerSpec } from '../../src/spec/schema.js';

const issuer = (extra: Partial<OidcIssuerSpec> = {}): OidcIssuerSpec => ({
  name: 'corp',
  issuer: 'https://login.example.com',
  audience: 'datagrant',
  claim: 'email',
  unverifiedEmail: 'refuse',
  ...extra,
});

describe('claimValueOf', () => {
  test.each([
    ['verified', { email: 'alice@example.com', email_verified: true }, { value: 'alice@example.com' }],
    ['no email_verified at all', { email: 'alice@example.com' }, { problem: expect.stringMatching(/does not say its email is verified/) }],
    ['email_verified false', { email: 'alice@example.com', email_verified: false }, { problem: expect.stringMatching(/does not say its email is verified/) }],
    [
      'email_verified "true" as a string',
      { email: 'alice@example.com', email_verified: 'true' },
      { problem: expect.stringMatching(/does not say its email is verified/) },
    ],
  ])('%s', (_, payload, expected) => {
    expect(claimValueOf(issuer(), { sub: 's', ...payload })).toEqual(expected);
  });

  test('an issuer trusted with unverifiedEmail: accept names by email without the claim', () => {
    expect(claimValueOf(issuer({ unverifiedEmail: 'accept' }), { sub: 's', email: 'alice@example.com' })).toEqual({ value: 'alice@example.com' });
  });

  test('another claim (a workload subject) needs no email_verified', () => {
    expect(claimValueOf(issuer({ claim: 'sub' }), { sub: 'repo:org/x:ref:refs/heads/main' })).toEqual({ value: 'repo:org/x:ref:refs/heads/main' });
  });
});

test('emails compare in ASCII case only: a Kelvin sign is not a k', () => {
  expect(claimKey('email', 'Kim@Example.com')).toBe(claimKey('email', 'kim@example.com'));
  expect(claimKey('email', '\u212Aim@example.com')).not.toBe(claimKey('email', 'kim@example.com'));
});
