// init, validate, schema.
import { z } from 'zod';
import { compile } from '../../compile/index.js';
import { assertSpecInvariants } from '../../compile/invariants.js';
import { specSchema } from '../../spec/schema.js';
import { initState } from '../../store/open.js';
import { loadSpecFor, pathsFor, withStore, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

export async function initCommand(io: Io, opts: CommonOptions & { installation?: string }): Promise<number> {
  const paths = pathsFor(io, opts);
  const { createdKey } = initState(paths, io.env);
  io.stdout(
    createdKey
      ? `Created ${paths.keyFile} (mode 0600). It encrypts every stored credential: back it up somewhere safe, never commit it.\n`
      : `State directory ${paths.dir} is ready; the master key ${io.env.DATAGRANT_MASTER_KEY ? 'comes from DATAGRANT_MASTER_KEY' : `is ${paths.keyFile}`}.\n`,
  );
  // Opening the store checks the key and gives a new state its installation id.
  const id = await withStore(io, opts, async (store) => {
    if (opts.installation) await store.setInstallation(opts.installation);
    return store.installation();
  });
  io.stdout(`Installation ${id}: every object datagrant makes from this state carries it.\n`);
  return 0;
}

/**
 * Validate and compile without touching any backend, and check the spec's invariants against its
 * own grants. SCIM people are not read here (that needs the state): plan and apply judge them.
 */
export async function validateCommand(io: Io, opts: CommonOptions): Promise<number> {
  const now = io.now();
  const loaded = loadSpecFor(io, opts, now);
  const { desired } = compile(loaded.spec, now);
  for (const n of loaded.notices) io.stderr(`Warning: ${n.message}\n`);
  assertSpecInvariants(loaded.spec, now, loaded.source);
  const counts = Object.entries(desired).map(([b, d]) => `${b}: ${d.resources.length} objects`);
  io.stdout(`The spec is valid (${counts.join('; ')}).\n`);
  return 0;
}

export function jsonSchema(): object {
  return { title: 'datagrant spec (version 1)', ...z.toJSONSchema(specSchema, { io: 'input' }) };
}

export async function schemaCommand(io: Io): Promise<number> {
  io.stdout(`${JSON.stringify(jsonSchema(), null, 2)}\n`);
  return 0;
}
