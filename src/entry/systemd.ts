// Public API of `fdbroker/systemd`: sd_notify and the fd store, for a Broker
// embedded as a library under systemd (`fdbroker serve` links them itself).
export { SdNotifier, parseNotifySocket, watchdogIntervalMs, type SdNotifierEvents } from '../systemd/sd-notify';
export { SystemdLink, statusLine, type SystemdLinkOptions } from '../systemd/systemd-link';
