// Listeners passed by the service manager (socket activation, or systemd's fd
// store giving back what a crashed broker pushed) meet the --listen specs of
// the restarted broker: a spec whose name came back adopts that socket instead
// of binding again, so the port, the inode and the accept queue (with the
// connections made while no broker ran) stay the same. Pure: no syscalls but
// close() of a stored socket that a spec replaces.
import { native } from '../native/binding';
import type { ListenerInfo } from '../protocol/messages';
import type { OwnedListener } from '../broker/listeners';
import type { ListenerSpec } from '../broker/spec';

/** An inherited socket; `spec` when a spec of its name adopted it (a reload then compares against that spec). */
export type InheritedListener = OwnedListener & { spec?: ListenerSpec };

export interface InheritedPlan {
  /** Specs to create (no socket of that name came back). */
  create: ListenerSpec[];
  /** Inherited sockets kept, named as they came back (owned by the caller). */
  adopt: InheritedListener[];
  /**
   * Names whose spec no longer matches the socket that came back (another
   * port, address, path or kind): the stored socket was closed and the spec
   * is among `create`. The command line wins: a changed unit file applies.
   */
  replaced: Array<{ name: string; was: ListenerInfo; why: string }>;
}

/** Why `info` (a socket that came back) is not what `spec` asks for, or undefined when it is. */
export function specMismatch(spec: ListenerSpec, info: ListenerInfo): string | undefined {
  if (spec.kind !== info.kind) return `it is ${info.kind}, the spec says ${spec.kind}`;
  if (spec.kind === 'unix') return spec.path === info.path ? undefined : `it is bound to ${info.path}, the spec says ${spec.path}`;
  const address = info.address ?? '';
  if (spec.host !== address) return `it is bound to ${address}, the spec says ${spec.host}`;
  // Port 0 means "any": the port the first broker was given is kept.
  if (spec.port !== 0 && spec.port !== info.port) return `it is bound to port ${info.port}, the spec says ${spec.port}`;
  return undefined;
}

/**
 * Matches inherited listeners to specs by name. A kept socket takes the
 * spec's backlog (what it was created with) instead of the somaxconn guess.
 * Mismatched stored sockets are closed here; every other fd in `inherited`
 * is returned in `adopt`.
 */
export function planInherited(specs: ListenerSpec[], inherited: OwnedListener[], defaultBacklog: number): InheritedPlan {
  const byName = new Map(inherited.map((l) => [l.info.name, l]));
  const plan: InheritedPlan = { create: [], adopt: [], replaced: [] };
  const matched = new Set<string>();
  for (const spec of specs) {
    const l = byName.get(spec.name);
    if (!l) {
      plan.create.push(spec);
      continue;
    }
    matched.add(spec.name);
    const why = specMismatch(spec, l.info);
    if (why) {
      native().close(l.fd);
      plan.replaced.push({ name: spec.name, was: l.info, why });
      plan.create.push(spec);
      continue;
    }
    plan.adopt.push({ fd: l.fd, info: spec.kind === 'udp' ? l.info : { ...l.info, backlog: spec.backlog ?? defaultBacklog }, spec });
  }
  for (const l of inherited) if (!matched.has(l.info.name)) plan.adopt.push(l);
  return plan;
}
