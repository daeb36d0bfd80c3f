// The Okta and Entra sequences again, with the server on the PostgreSQL store (DATAGRANT_TEST_PG_URL;
// never skipped: without a server this file fails).
import { afterAll, beforeAll } from 'vitest';
import { openPgScimStore } from '../../src/scim/store/postgres.js';
import { pgFixture, testPgUrl, urlFor } from '../support/pg.js';
import { harness } from './helpers.js';
import { idpSequences } from './idp-sequences.js';

testPgUrl();

const fx = pgFixture('dg_scimsrv');
let db: string;
let n = 0;
beforeAll(async () => {
  db = await fx.database('scim');
});
afterAll(async () => {
  await fx.cleanup();
});

idpSequences(() => harness({ makeStore: (o) => openPgScimStore(urlFor(db), { ...o, schema: `srv${++n}` }) }));
