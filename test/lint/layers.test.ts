// The layer rules of eslint.config.js fire: an import that crosses a layer is an error, an import
// of a lower layer is not (ARCHITECTURE.md). Linted as if the code were in each folder.
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { resolve } from 'node:path';
import { describe, expect, test } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
// The files linted here do not exist, so no TypeScript project holds them: type-aware rules off.
const eslint = new ESLint({ cwd: root, overrideConfig: [{ files: ['**/*.ts'], ...tseslint.configs.disableTypeChecked }] });

async function problems(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: resolve(root, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax').map((m) => m.message);
}

describe('layers', () => {
  test.each([
    ['src/compile/x.ts', "import { openStore } from '../store/open.js';", /pure core must not import from/],
    ['src/compile/aws/x.ts', "import { AwsBackend } from '../../backends/aws/driver.js';", /pure core must not import from/],
    ['src/plan/x.ts', "import { readFileSync } from 'node:fs';", /does no I\/O/],
    ['src/render/x.ts', 'export const t = new Date();', /never reads the clock/],
    ['src/spec/x.ts', 'export const e = process.env.HOME;', /never reads the environment/],
    ['src/model/x.ts', "import { compile } from '../compile/index.js';", /resource model must not import from/],
    ['src/backends/aws/x.ts', "import { compileAws } from '../../compile/aws/compile.js';", /drivers must not import from/],
    ['src/backends/x.ts', "import { SqliteStore } from '../store/sqlite.js';", /drivers must not import from/],
    ['src/store/x.ts', "import type { Backend } from '../backends/backend.js';", /state store must not import from/],
    ['src/serve/x.ts', "import { main } from '../cli/main.js';", /serve must not import from cli/],
    ['src/app/x.ts', "import { startServe } from '../serve/serve.js';", /app layer must not import from/],
    ['src/scim/x.ts', "import { converge } from '../app/converge.js';", /SCIM must not import from/],
  ])('%s: %s is refused', async (file, code, message) => {
    const found = await problems(file, code);
    expect(
      found.some((m) => message.test(m)),
      found.join('\n') || 'no problem reported',
    ).toBe(true);
  });

  test.each([
    ['src/backends/aws/x.ts', "import { INSTALLATION_TAG } from '../../model/aws.js';"],
    ['src/compile/aws/x.ts', "import { normalizePolicy } from '../../model/aws-policy.js';"],
    ['src/app/x.ts', "import { compile } from '../compile/index.js';"],
    ['src/serve/x.ts', "import { converge } from '../app/converge.js';"],
    ['src/cli/x.ts', "import { startServe } from '../serve/serve.js';"],
  ])('%s: %s is allowed', async (file, code) => {
    expect(await problems(file, code)).toEqual([]);
  });
});
