// The little of Node the client's programs use, declared here so that no @types/node is needed.

declare const process: {
  env: Record<string, string | undefined>;
  argv: string[];
  stdin: AsyncIterable<Uint8Array | string>;
  exit(code: number): never;
};

declare module "node:fs" {
  export function readFileSync(path: string | URL): Uint8Array;
}
