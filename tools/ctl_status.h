/*
 * ctl_status.h - `sluicectl status [--json]` (ctl_status.c).
 */
#ifndef SLUICE_CTL_STATUS_H
#define SLUICE_CTL_STATUS_H

#include "../engine/config.h"

/* argv[0] is "status". Exit code: 0, 1 (no daemon, bad answer), 2. */
int ctl_status(const struct config *cfg, int argc, char **argv);

#endif
