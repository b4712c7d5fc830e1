// Which JavaScript runtime runs the library, and whether fdbroker's native
// addon can work in it. The addon waits for its sockets with libuv's uv_poll
// on the runtime's loop; Node runs it, other runtimes that load Node-API
// addons do not (measured, docs/guides/other-languages.md):
//   - Bun (1.4): aborts the process ("unsupported uv function: uv_poll_init");
//   - Deno (2.9): never runs the poll callbacks, so the broker's replies never
//     arrive and every request ends in ERR_FDBROKER_TIMEOUT.
// Both serve an inherited socket under `fdbroker exec` instead (with
// node:net; under Bun, not node:http, which binds a new port).
import { FdbrokerError } from '../protocol/errors';

/** Bun or Deno as named in process.versions, with the version; undefined under Node. */
export function foreignRuntime(): { name: 'Bun' | 'Deno'; version: string } | undefined {
  const v = process.versions as NodeJS.ProcessVersions & { bun?: string; deno?: string };
  if (typeof v.bun === 'string') return { name: 'Bun', version: v.bun };
  if (typeof v.deno === 'string') return { name: 'Deno', version: v.deno };
  return undefined;
}

const WHY = {
  Bun: 'Bun aborts when a Node-API addon calls uv_poll_init, which fdbroker\'s addon needs to wait for the broker',
  Deno: 'Deno does not run the uv_poll callbacks of Node-API addons, so the broker\'s replies would never be read (ERR_FDBROKER_TIMEOUT)',
} as const;

/**
 * Throws ERR_FDBROKER_UNSUPPORTED_RUNTIME where the library cannot talk to a
 * broker (before any fd is opened): at once, instead of a crash or a hang.
 */
export function assertSupportedRuntime(): void {
  const rt = foreignRuntime();
  if (rt === undefined) return;
  throw new FdbrokerError('ERR_FDBROKER_UNSUPPORTED_RUNTIME',
    `fdbroker's library needs Node.js; this is ${rt.name} ${rt.version}: ${WHY[rt.name]}. `
    + `Run the program under \`fdbroker exec\` instead and serve fd 3 (${rt.name === 'Bun' ? 'node:net' : 'node:http or node:net'} listen({ fd: 3 }))`);
}
