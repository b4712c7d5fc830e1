// `fdbroker serve` under systemd: the two steps serve.ts calls.
//   inheritForServe(): LISTEN_FDS (socket units and the fd store) meet --listen,
//     before the broker starts (a spec whose name came back adopts that socket).
//   systemdFromEnv(): NOTIFY_SOCKET and WATCHDOG_USEC read and checked first,
//     before anything is created or taken over (a bad value fails the start, not a broker that serves).
//   linkSystemd(): with NOTIFY_SOCKET set, READY/STATUS/STOPPING/WATCHDOG and
//     the fd store (src/systemd/systemd-link.ts), once the control socket answers.
// Reload code gets the link from serve (`systemd?.reloading()`, then `systemd?.ready()`).
import type { Broker } from '../broker/broker';
import { planInherited, type InheritedPlan } from '../systemd/inherited';
import { SdNotifier, watchdogIntervalMs, type SdNotifierOptions } from '../systemd/sd-notify';
import type { ListenerSpec } from '../broker/spec';
import { takeInheritedListeners } from '../systemd/listen-fds';
import { SystemdLink } from '../systemd/systemd-link';
import { DEFAULT_LISTEN_BACKLOG } from '../broker/defaults';
import { BrokerConnection } from '../client/connection';
import type { Io } from './io';

/** Takes LISTEN_FDS (unless --no-inherit) and matches them with the specs; the caller owns `plan.adopt`'s fds. */
export function inheritForServe(specs: ListenerSpec[], inherit: boolean, backlog: number | undefined, io: Io): InheritedPlan {
  if (!inherit) return { create: specs, adopt: [], replaced: [] };
  const plan = planInherited(specs, takeInheritedListeners(process.env, backlog), backlog ?? DEFAULT_LISTEN_BACKLOG);
  for (const r of plan.replaced) {
    io.err(`fdbroker: listener "${r.name}" came back from the service manager but ${r.why}: closed it and created the one the configuration gives`);
  }
  return plan;
}

export interface SystemdEnv { notifier: SdNotifier; watchdogMs: number | undefined }

/** The service manager's notify socket and watchdog interval, or undefined without NOTIFY_SOCKET; throws ERR_FDBROKER_SYSTEMD on a malformed value. */
export function systemdFromEnv(env: NodeJS.ProcessEnv = process.env, options: SdNotifierOptions = {}): SystemdEnv | undefined {
  const watchdogMs = watchdogIntervalMs(env);
  const notifier = SdNotifier.fromEnv(env, options);
  return notifier ? { notifier, watchdogMs } : undefined;
}

/**
 * With `sd` (systemdFromEnv()): checks that the control socket answers (a
 * hello on a connection of our own), then sends READY=1 and pushes the
 * listeners to the fd store. Returns the link (stopping() on SIGTERM), or
 * undefined without `sd`. Notification failures are printed, not fatal.
 */
export async function linkSystemd(broker: Broker, plan: InheritedPlan, sd: SystemdEnv | undefined, io: Io): Promise<SystemdLink | undefined> {
  if (!sd) return undefined;
  const { notifier } = sd;
  notifier.on('warning', (err) => io.err(`fdbroker: warning: ${err.message}${err.cause ? ` (${(err.cause as Error).message})` : ''}`));
  const link = new SystemdLink(broker, notifier, {
    watchdogMs: sd.watchdogMs,
    inherited: plan.adopt.map((l) => l.info.name),
    replaced: plan.replaced.map((r) => r.name),
  });
  try {
    const conn = await BrokerConnection.connect(broker.controlPath);
    conn.close();
  } catch (err) {
    link.close();
    throw err;
  }
  link.ready();
  return link;
}
