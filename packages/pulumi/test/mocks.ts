// Pulumi's mock runtime, recording every resource the program registers.
import * as pulumi from '@pulumi/pulumi';

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

export const registered: Registered[] = [];

export const ACCOUNT = '123456789012';

await pulumi.runtime.setMocks(
  {
    newResource(args) {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown> });
      const state: Record<string, unknown> = { ...args.inputs };
      let id = `${args.name}-id`;
      if (args.type === 'aws:iam/policy:Policy') {
        state.arn = `arn:aws:iam::${ACCOUNT}:policy${String(args.inputs.path)}${String(args.inputs.name)}`;
      }
      if (args.type === 'aws:iam/accessKey:AccessKey') {
        id = `AKIA-${args.name}`;
        state.secret = `secret-of-${args.name}`;
      }
      return { id, state };
    },
    call(args) {
      return args.inputs as Record<string, unknown>;
    },
  },
  'datagrant-test',
  'test',
  false,
);

/** The value of an output, once the mock runtime has resolved it. */
export function value<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

/** Resolves once every resource has been registered with the (mock) engine. */
export async function settled(resources: pulumi.Resource[]): Promise<void> {
  await Promise.all(resources.map((r) => value(r.urn)));
}

/** The children a component created with `parent: component` (Pulumi's own bookkeeping). */
export function childrenOf(component: pulumi.ComponentResource): pulumi.Resource[] {
  const set = (component as unknown as { __childResources?: Set<pulumi.Resource> }).__childResources;
  return [...(set ?? [])];
}

export function parentOf(r: pulumi.Resource): pulumi.Resource | undefined {
  return (r as unknown as { __parentResource?: pulumi.Resource }).__parentResource;
}
