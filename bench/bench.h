/*
 * bench.h - the programs of sluice-bench behind one binary: its two
 * halves, `sluice-bench source ...` and `sluice-bench sink ...`, and
 * `sluice-bench tls-handshake`, a baseline of what TLS costs alone.
 * Each takes its own arguments (argv[0] is the subcommand) and returns
 * the process exit status: 0 done, 1 failed or saw errors it was asked to
 * count as failure, 2 usage error.
 */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

int bench_source_main(int argc, char **argv);
int bench_sink_main(int argc, char **argv);
/* sluice-bench dkim-speed: DKIM signatures per second (dkim_speed.c). */
int bench_dkim_speed_main(int argc, char **argv);
/* sluice-bench log-sync: a busy log's effect on fdatasync (log_sync.c). */
int bench_log_sync_main(int argc, char **argv);
/* sluice-bench seg-sync: fdatasync after an append vs. into allocated
 * space (seg_sync.c). */
int bench_seg_sync_main(int argc, char **argv);
/* `sluice-bench tls-handshake`: the bare TLS handshake baseline. */
int bench_tls_handshake_main(int argc, char **argv);

#endif
