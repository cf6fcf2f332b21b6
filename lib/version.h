/*
 * version.h - the one version number every program prints (--version).
 * Bumped by hand at a release; the build adds nothing to it, so two
 * builds of the same tree say the same thing.
 */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#define SLUICE_VERSION "0.9.0"

#endif
