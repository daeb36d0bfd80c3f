// Okta's and Entra ID's documented SCIM request sequences, replayed against the server, asserting
// responses and the principals each step produces for the spec.
// Shared by the SQLite (server-idp.test.ts) and PostgreSQL (server-postgres.test.ts) runs.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ENTERPRISE_SCHEMA, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA } from '../../src/scim/schemas.js';
import { patchBody, q, type Harness } from './helpers.js';

export function idpSequences(make: () => Promise<Harness>): void {
  let h: Harness;
  beforeEach(async () => {
    h = await make();
  });
  afterEach(async () => {
    await h.close();
  });

  describe('Okta', () => {
    test('create, look up, group push, deactivate, reactivate, unassign, rename', async () => {
      // Okta first checks whether the user exists.
      let r = await h.req('GET', `/scim/v2/Users?filter=${q('userName eq "alice.liddell@example.com"')}&startIndex=1&count=100`);
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toBe('application/scim+json; charset=utf-8');
      expect(r.body).toEqual({ schemas: [LIST_SCHEMA], totalResults: 0, itemsPerPage: 0, startIndex: 1, Resources: [] });

      r = await h.req('POST', '/scim/v2/Users', {
        schemas: [USER_SCHEMA],
        userName: 'alice.liddell@example.com',
        name: { givenName: 'Alice', familyName: 'Liddell' },
        emails: [{ primary: true, value: 'alice.liddell@example.com', type: 'work' }],
        displayName: 'Alice Liddell',
        locale: 'en-US',
        externalId: '00ujl29u0le5T6Aj10h7',
        groups: [],
        password: '1mz050nq',
        active: true,
      });
      expect(r.status).toBe(201);
      const id = r.body.id as string;
      expect(r.headers.location).toBe(`http://localhost:80/scim/v2/Users/${id}`);
      expect(r.headers.etag).toBe('W/"1"');
      expect(r.body).toMatchObject({
        schemas: [USER_SCHEMA],
        id,
        externalId: '00ujl29u0le5T6Aj10h7',
        userName: 'alice.liddell@example.com',
        active: true,
        meta: { resourceType: 'User', version: 'W/"1"', location: r.headers.location },
      });
      expect(r.raw).not.toContain('1mz050nq'); // never stored, never returned
      expect(await h.principals()).toEqual({ alice_liddell: { type: 'person', email: 'alice.liddell@example.com', groups: [], grants: [] } });

      r = await h.req('GET', `/scim/v2/Users?filter=${q('userName eq "ALICE.LIDDELL@example.com"')}`);
      expect(r.body).toMatchObject({ totalResults: 1, itemsPerPage: 1, Resources: [{ id }] });
      r = await h.req('GET', `/scim/v2/Users/${id}`);
      expect(r.status).toBe(200);
      expect(r.headers.etag).toBe('W/"1"');

      // Group push.
      r = await h.req('POST', '/scim/v2/Groups', { schemas: [GROUP_SCHEMA], displayName: 'ML Research', members: [] });
      expect(r.status).toBe(201);
      const gid = r.body.id as string;
      r = await h.req(
        'PATCH',
        `/scim/v2/Groups/${gid}`,
        patchBody({ op: 'add', path: 'members', value: [{ value: id, display: 'alice.liddell@example.com' }] }),
      );
      expect(r.status).toBe(200);
      expect(r.body.members).toEqual([{ value: id, display: 'alice.liddell@example.com', type: 'User' }]);
      expect(await h.principals()).toEqual({ alice_liddell: { type: 'person', email: 'alice.liddell@example.com', groups: ['ml-researchers'], grants: [] } });

      // Deactivation: Okta never deletes.
      r = await h.req('PATCH', `/scim/v2/Users/${id}`, patchBody({ op: 'replace', value: { active: false } }));
      expect(r.status).toBe(200);
      expect(r.body.active).toBe(false);
      expect(r.headers.etag).toBe('W/"2"');
      expect(await h.principals()).toEqual({});

      r = await h.req('PATCH', `/scim/v2/Users/${id}`, patchBody({ op: 'replace', value: { active: true } }));
      expect(r.body.active).toBe(true);
      expect(Object.keys(await h.principals())).toEqual(['alice_liddell']);

      // Profile update by PUT (Okta sends the whole user, id included).
      const { body: current } = await h.req('GET', `/scim/v2/Users/${id}`);
      r = await h.req('PUT', `/scim/v2/Users/${id}`, { ...current, name: { givenName: 'Alicia', familyName: 'Liddell' }, meta: undefined });
      expect(r.status).toBe(200);
      expect(r.body.name).toEqual({ givenName: 'Alicia', familyName: 'Liddell' });
      expect(r.body.id).toBe(id);

      // Unassign from the group, then rename the group.
      r = await h.req('PATCH', `/scim/v2/Groups/${gid}`, patchBody({ op: 'remove', path: `members[value eq "${id}"]` }));
      expect(r.status).toBe(200);
      expect(r.body.members).toBeUndefined();
      expect((await h.principals()).alice_liddell!.groups).toEqual([]);
      r = await h.req(
        'PATCH',
        `/scim/v2/Groups/${gid}`,
        patchBody({ op: 'replace', value: { id: gid, displayName: 'Data Eng' } }, { op: 'add', path: 'members', value: [{ value: id }] }),
      );
      expect(r.body.displayName).toBe('Data Eng');
      expect((await h.principals()).alice_liddell!.groups).toEqual(['data-engineers']);

      // A second create of the same userName (any case) is a conflict.
      r = await h.req('POST', '/scim/v2/Users', { schemas: [USER_SCHEMA], userName: 'Alice.Liddell@Example.com' });
      expect(r.status).toBe(409);
      expect(r.body).toMatchObject({ status: '409', scimType: 'uniqueness' });

      expect(h.changes.map((c) => `${c.type}:${c.action}`)).toEqual([
        'User:create',
        'Group:create',
        'Group:update',
        'User:update',
        'User:update',
        'User:update',
        'Group:update',
        'Group:update',
      ]);
    });
  });

  describe('Entra ID', () => {
    test('create with the enterprise extension, group membership probes, string booleans, multi-op PATCH, member removal by value list, delete', async () => {
      // Entra probes with a filter on the matching attribute.
      let r = await h.req('GET', `/scim/v2/Users?filter=${q('userName eq "Bob.Builder@contoso.com"')}`);
      expect(r.body.totalResults).toBe(0);
      r = await h.req('POST', '/scim/v2/Users', {
        schemas: [USER_SCHEMA, ENTERPRISE_SCHEMA],
        externalId: '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef',
        userName: 'Bob.Builder@contoso.com',
        active: true,
        addresses: [
          {
            type: 'work',
            formatted: '1 Main St',
            streetAddress: '1 Main St',
            locality: 'Redmond',
            region: 'WA',
            postalCode: '98052',
            country: 'US',
            primary: true,
          },
        ],
        displayName: 'Bob Builder',
        emails: [{ primary: true, type: 'work', value: 'Bob.Builder@contoso.com' }],
        meta: { resourceType: 'User' },
        name: { formatted: 'Bob Builder', familyName: 'Builder', givenName: 'Bob' },
        phoneNumbers: [{ type: 'work', value: '+1 425 555 0100' }],
        roles: [],
        title: 'Engineer',
        [ENTERPRISE_SCHEMA]: { employeeNumber: '1001', department: 'Research', manager: { value: 'm-1' } },
      });
      expect(r.status).toBe(201);
      const uid = r.body.id as string;
      expect(r.body.schemas).toEqual([USER_SCHEMA, ENTERPRISE_SCHEMA]);
      expect(r.body[ENTERPRISE_SCHEMA]).toEqual({ employeeNumber: '1001', department: 'Research', manager: { value: 'm-1' } });
      expect(Object.keys(await h.principals())).toEqual(['bob_builder']);

      r = await h.req('GET', `/scim/v2/Users?filter=${q(`externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"`)}`);
      expect(r.body.totalResults).toBe(1);

      // Groups: lookup without members, create, add member.
      r = await h.req('GET', `/scim/v2/Groups?excludedAttributes=members&filter=${q('displayName eq "ML Research"')}`);
      expect(r.body.totalResults).toBe(0);
      r = await h.req('POST', '/scim/v2/Groups', {
        schemas: [GROUP_SCHEMA],
        externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159',
        displayName: 'ML Research',
        meta: { resourceType: 'Group' },
        members: [],
      });
      expect(r.status).toBe(201);
      const gid = r.body.id as string;
      r = await h.req('PATCH', `/scim/v2/Groups/${gid}`, patchBody({ op: 'Add', path: 'members', value: [{ value: uid }] }));
      expect(r.status).toBe(200);
      expect((await h.principals()).bob_builder!.groups).toEqual(['ml-researchers']);

      // Entra's membership probe, and its member-free listing.
      r = await h.req('GET', `/scim/v2/Groups?excludedAttributes=members&filter=${q(`id eq "${gid}" and members eq "${uid}"`)}`);
      expect(r.body.totalResults).toBe(1);
      expect(r.body.Resources).toEqual([expect.not.objectContaining({ members: expect.anything() })]);
      expect((r.body.Resources as Record<string, unknown>[])[0]).toMatchObject({
        id: gid,
        displayName: 'ML Research',
        externalId: '8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159',
      });
      r = await h.req('GET', `/scim/v2/Groups?excludedAttributes=members`);
      expect(r.body.Resources).toEqual([expect.not.objectContaining({ members: expect.anything() })]);
      r = await h.req('GET', `/scim/v2/Groups/${gid}?excludedAttributes=members`);
      expect(r.body).not.toHaveProperty('members');

      // Disable: "False" as a string.
      r = await h.req('PATCH', `/scim/v2/Users/${uid}`, patchBody({ op: 'Replace', path: 'active', value: 'False' }));
      expect(r.status).toBe(200);
      expect(r.body.active).toBe(false);
      expect(await h.principals()).toEqual({});

      // Multi-operation update with the quirks, re-enabling the user.
      r = await h.req(
        'PATCH',
        `/scim/v2/Users/${uid}`,
        patchBody(
          { op: 'Add', path: 'emails[type eq "work"].value', value: 'bob@contoso.com' },
          { op: 'Replace', path: 'displayName', value: 'Bob B.' },
          { op: 'Add', value: { 'name.givenName': 'Robert', 'name.familyName': 'Builder' } },
          { op: 'Replace', path: `${ENTERPRISE_SCHEMA}:department`, value: 'ML' },
          { op: 'Remove', path: `${ENTERPRISE_SCHEMA}:manager` },
          { op: 'Replace', value: { active: 'True' } },
        ),
      );
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({
        displayName: 'Bob B.',
        active: true,
        emails: [{ primary: true, type: 'work', value: 'bob@contoso.com' }],
        name: { formatted: 'Bob Builder', familyName: 'Builder', givenName: 'Robert' },
        [ENTERPRISE_SCHEMA]: { employeeNumber: '1001', department: 'ML' },
      });
      expect(await h.principals()).toEqual({ bob_builder: { type: 'person', email: 'bob@contoso.com', groups: ['ml-researchers'], grants: [] } });

      // Member removal, Entra style: path "members" with a value list.
      r = await h.req('PATCH', `/scim/v2/Groups/${gid}`, patchBody({ op: 'Remove', path: 'members', value: [{ value: uid }] }));
      expect(r.status).toBe(200);
      expect((await h.principals()).bob_builder!.groups).toEqual([]);
      r = await h.req('PATCH', `/scim/v2/Groups/${gid}`, patchBody({ op: 'Add', path: 'members', value: [{ value: uid }] }));
      expect(r.status).toBe(200);
      expect((await h.principals()).bob_builder!.groups).toEqual(['ml-researchers']);

      // Hard delete: gone from the user list and from the group.
      r = await h.req('DELETE', `/scim/v2/Users/${uid}`);
      expect(r.status).toBe(204);
      expect(r.raw).toBe('');
      r = await h.req('GET', `/scim/v2/Users/${uid}`);
      expect(r.status).toBe(404);
      expect(r.body).toMatchObject({ schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'], status: '404' });
      r = await h.req('GET', `/scim/v2/Groups/${gid}`);
      expect(r.body.members).toBeUndefined();
      expect(await h.principals()).toEqual({});
      r = await h.req('DELETE', `/scim/v2/Groups/${gid}`);
      expect(r.status).toBe(204);
    });
  });

  describe('edges', () => {
    test('a PUT that leaves out active does not reactivate a deactivated user', async () => {
      const { body } = await h.req('POST', '/scim/v2/Users', { schemas: [USER_SCHEMA], userName: 'c@example.com', active: true });
      const id = body.id as string;
      await h.req('PATCH', `/scim/v2/Users/${id}`, patchBody({ op: 'replace', value: { active: false } }));
      const r = await h.req('PUT', `/scim/v2/Users/${id}`, { schemas: [USER_SCHEMA], userName: 'c@example.com', displayName: 'C' });
      expect(r.status).toBe(200);
      expect(r.body.active).toBe(false);
      expect(await h.principals()).toEqual({});
    });

    test('a repeated query parameter counts once (the last), never a 500', async () => {
      await h.req('POST', '/scim/v2/Users', { schemas: [USER_SCHEMA], userName: 'd@example.com' });
      const r = await h.req(
        'GET',
        `/scim/v2/Users?attributes=displayName&attributes=userName&count=5&count=1&filter=${q('userName pr')}&filter=${q('userName eq "d@example.com"')}`,
      );
      expect(r.status).toBe(200);
      expect(r.body.Resources).toEqual([{ schemas: [USER_SCHEMA], id: expect.any(String), userName: 'd@example.com' }]);
    });
  });
}
