/*
 * sdnotify.h - tell a service manager how the daemon is doing, by the
 * NOTIFY_SOCKET datagram protocol that systemd's Type=notify services use
 * (sd_notify(3)): "READY=1" once serving, "RELOADING=1" and "STOPPING=1"
 * as they happen, "STATUS=..." for `systemctl status`. Without
 * NOTIFY_SOCKET in the environment every call does nothing, so the daemon
 * behaves the same started by hand, by a test or by another supervisor.
 */
#ifndef SLUICE_SDNOTIFY_H
#define SLUICE_SDNOTIFY_H

/*
 * Reads and unsets NOTIFY_SOCKET (children must not inherit it) and opens
 * the socket. Call once at start, while the environment is still the
 * process's own; 0 when there is nothing to tell or it is set up, else
 * -errno (a malformed address), which callers log and ignore.
 */
int sdnotify_init(void);

/*
 * Sends one state string, e.g. "READY=1\nSTATUS=listening on ...": 0, or
 * -errno. Never blocks; safe from any thread once sdnotify_init() ran.
 */
int sdnotify(const char *state);

#endif
