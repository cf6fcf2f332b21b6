/*
 * ctl_reload.c - `sluicectl reload`: have the running sluiced read its
 * configuration again (engine/reload.h), and say what came of it.
 *
 * The configuration is checked here first, as `sluicectl check` does:
 * a file with errors is reported with file and line without bothering
 * the daemon (which would refuse it the same way). The daemon's own
 * verdict is the one that counts, though: it reads the file as its own
 * user, with its own -o options and environment, and binds what it
 * adds. Its answer is printed as it comes: "generation N: WHAT CHANGED"
 * on standard output (exit 0), or the reason and the configuration's
 * errors on standard error (exit 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/config.h"
#include "sluicectl_int.h"

/* A reload reads keys and binds sockets: seconds at most. */
#define RELOAD_ASK_MS 30000

int
ctl_reload(const struct config *cfg, int argc, char **argv)
{
	char why[512], *reply = NULL;

	(void)argv;
	if (argc != 1)
		return ctl_usage_error("reload takes no arguments");
	if (ctl_ask(cfg, "reload\n", RELOAD_ASK_MS, &reply, why,
	    sizeof(why)) != 0) {
		ctl_error("reload: %s", why);
		return CTL_EXIT_OPERATIONAL;
	}
	if (strncmp(reply, "ok ", 3) == 0) {
		fputs(reply + 3, stdout);
		free(reply);
		return ctl_finish_output();
	}
	if (strncmp(reply, "error ", 6) == 0) {
		fputs("sluicectl: reload: ", stderr);
		fputs(reply + 6, stderr);
	} else {
		ctl_error("reload: no answer from sluiced");
	}
	free(reply);
	return CTL_EXIT_OPERATIONAL;
}
