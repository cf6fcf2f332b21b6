/*
 * bench.h - the two halves of sluice-bench, each a program of its own
 * behind one binary: `sluice-bench source ...` and `sluice-bench sink ...`.
 * Each takes its own arguments (argv[0] is "source" or "sink") and returns
 * the process exit status: 0 done, 1 failed or saw errors it was asked to
 * count as failure, 2 usage error.
 */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

int bench_source_main(int argc, char **argv);
int bench_sink_main(int argc, char **argv);
/* sluice-bench dkim-speed: DKIM signatures per second (dkim_speed.c). */
int bench_dkim_speed_main(int argc, char **argv);

#endif
