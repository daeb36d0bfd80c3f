// init, validate, schema.
import { z } from 'zod';
import { compile } from '../../compile/index.js';
import { assertSpecInvariants } from '../../compile/invariants.js';
import { specSchema } from '../../spec/schema.js';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { UsageError } from '../../core/errors.js';
import { generateWrappedKey } from '../../store/kms.js';
import { checkInstallationId, newInstallationId } from '../../store/meta.js';
import { initState, keyConfigured, openStore, writeKeyFile } from '../../store/open.js';
import { loadSpecFor, pathsFor, withStore, type CommonOptions } from '../../app/context.js';
import type { Io } from '../../app/io.js';

export async function initCommand(io: Io, opts: CommonOptions & { installation?: string; kmsKey?: string }): Promise<number> {
  const paths = pathsFor(io, opts);
  if (opts.kmsKey) await initKms(io, opts.kmsKey, opts);
  const { createdKey } = initState(paths, io.env);
  io.stdout(
    createdKey
      ? `Created ${paths.keyFile} (mode 0600). It encrypts every stored credential: back it up somewhere safe, never commit it.\n`
      : `State directory ${paths.dir} is ready; the master key ${
          io.env.DATAGRANT_MASTER_KEY
            ? 'comes from DATAGRANT_MASTER_KEY'
            : io.env.DATAGRANT_MASTER_KEY_KMS
              ? 'is the KMS-wrapped key in DATAGRANT_MASTER_KEY_KMS'
              : existsSync(paths.kmsKeyFile)
                ? `is wrapped by KMS in ${paths.kmsKeyFile}`
                : `is ${paths.keyFile}`
        }.\n`,
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
 * A new state whose master key KMS wraps: only the wrapped copy is written (master.key.kms), and
 * the state is made with the installation id the wrapping names.
 */
async function initKms(io: Io, keyId: string, opts: CommonOptions & { installation?: string }): Promise<void> {
  const paths = pathsFor(io, opts);
  if (keyConfigured(paths, io.env)) {
    throw new UsageError(
      `a master key is already configured (DATAGRANT_MASTER_KEY, DATAGRANT_MASTER_KEY_KMS, ${paths.keyFile} or ${paths.kmsKeyFile}); init --kms-key makes the key of a new state. To put an existing state's key under KMS, run \`datagrant rekey --kms-key ARN\`.`,
    );
  }
  const installation = opts.installation ? checkInstallationId(opts.installation) : newInstallationId();
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const { key, file } = await generateWrappedKey(keyId, installation, io.env);
  writeKeyFile(paths.kmsKeyFile, `${JSON.stringify(file, null, 2)}\n`);
  try {
    const store = await openStore(paths, io.env, { key });
    try {
      await store.setInstallation(installation);
    } finally {
      await store.close();
    }
  } catch (e) {
    rmSync(paths.kmsKeyFile, { force: true });
    throw e;
  }
  io.stdout(
    `Created ${paths.kmsKeyFile}: the master key wrapped by KMS key ${file.kms.keyId}; no plaintext key is written. Every start unwraps it with kms:Decrypt.\n`,
  );
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
