// Session login names: unique per session, recognisable, and always a valid PostgreSQL role name.
import { describe, expect, test } from 'vitest';
import { sessionLoginName } from '../../src/backends/postgres/sessions.js';
import { pgAddress, sessionSuffix } from '../../src/model/postgres.js';
import { NAME_RE } from '../../src/spec/schema.js';
import { pgRoleNameProblem } from '../../src/spec/limits.js';

describe('session login names', () => {
  test('the principal, "~" and 8 random base32 characters; two sessions never share one', () => {
    const a = sessionLoginName('alice@example.com');
    expect(a).toMatch(/^alice@example\.com~[a-z2-7]{8}$/);
    expect(sessionSuffix(a)).toBe(a.slice(-8));
    expect(new Set(Array.from({ length: 200 }, () => sessionLoginName('alice'))).size).toBe(200);
    // No spec name can be one, so no principal or group ever collides with a session login.
    expect(NAME_RE.test(a)).toBe(false);
  });

  test('a long principal name is cut, by whole characters, so that the login fits 63 bytes', () => {
    for (const principal of ['p'.repeat(63), `${'x'.repeat(53)}é`, 'ü'.repeat(40)]) {
      const login = sessionLoginName(principal, 'abcdefgh');
      expect(pgRoleNameProblem(login)).toBeUndefined();
      expect(Buffer.byteLength(login, 'utf8')).toBeLessThanOrEqual(63);
      expect(login.endsWith('~abcdefgh')).toBe(true);
      expect(principal.startsWith(login.slice(0, -9))).toBe(true);
      expect(login).not.toContain('\uFFFD');
    }
  });

  test('the address holds the principal and the suffix, never "~" (which marks superseded credentials)', () => {
    expect(pgAddress.sessionLogin('wh', 'alice', 'alice~abcdefgh')).toBe('wh:session-login/alice/abcdefgh');
    expect(sessionSuffix('alice')).toBeUndefined();
    expect(sessionSuffix('alice~ABCDEFGH')).toBeUndefined();
  });
});
