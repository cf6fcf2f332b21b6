/*
 * Description: what a reload may change. gen_restart_key() names the
 * first setting that only a restart can change (and none when only
 * reloadable ones differ); gen_summary() says at a coarse level what
 * changed; a generation holds its configuration and counts references
 * (gen_create(), gen_hold(), gen_release(), gen_discard()).
 * Exit 0: all cases passed; 1: some failed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "../../engine/config.h"
#include "../../engine/gen.h"
#include "../../lib/budget.h"

/* The embedded default with these overrides (NULL-terminated). */
static void
load(struct config *cfg, const char *const *ov)
{
	struct config_errors errs = { 0 };
	size_t n = 0;

	while (ov[n] != NULL)
		n++;
	if (config_load(cfg, NULL, (char *const *)ov, n, NULL, &errs) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		CHECK_FATAL(!"config_load");
	}
	config_errors_free(&errs);
}

static const char *base[] = { "spool=/tmp/x", "shards=2", "user=root",
	"listen.0.address=127.0.0.1:2525", NULL };

static const struct {
	const char *name;
	const char *ov[8];
	const char *key;	/* NULL: a reload may change it */
	const char *summary;	/* a part of the summary */
} cases[] = {
	{ "nothing", { NULL }, NULL, "no setting changed" },
	{ "spool", { "spool=/tmp/y", NULL }, "spool", NULL },
	{ "shards", { "shards=3", NULL }, "shards", NULL },
	{ "user", { "user=sluice", NULL }, "user", NULL },
	{ "index size", { "queue.index_size=64M", NULL }, "queue.index_size",
	    NULL },
	{ "connections", { "limits.connections=17", NULL },
	    "limits.connections", NULL },
	{ "memory", { "limits.memory=64M", NULL }, "limits.memory", NULL },
	{ "resolver", { "dns.resolver=127.0.0.1:53", NULL }, "dns.resolver",
	    NULL },
	{ "delivery log", { "delivery.log=/tmp/dl", NULL }, "delivery.log",
	    NULL },
	{ "outbound connections", { "delivery.connections=7", NULL },
	    "delivery.connections", NULL },
	{ "metrics", { "metrics.listen=127.0.0.1:9108", NULL },
	    "metrics.listen", NULL },
	{ "dkim_signing", { "dkim_signing.workers=3", NULL }, NULL, "dkim" },
	{ "message size", { "limits.message_size=1M", NULL }, NULL, "limits" },
	{ "route", { "routes=[{domain: a.test, transport: discard}]", NULL },
	    NULL, "routes" },
	{ "relay host", { "relay_host=[127.0.0.1]:2526", NULL }, NULL,
	    "routes" },
	{ "networks", { "allowed_networks=[10.0.0.0/8]", NULL }, NULL,
	    "networks" },
	{ "listener added", { "listen.1.address=127.0.0.1:2526", NULL }, NULL,
	    "listeners (+1 -0 ~0)" },
	{ "listener changed", { "listen.0.tls=starttls", NULL }, NULL,
	    "listeners (+0 -0 ~1)" },
	{ "hostname", { "hostname=mx.example.org", NULL }, NULL, "hostname" },
	{ "log", { "log.level=debug", NULL }, NULL, "log" },
	{ "idle keep", { "delivery.idle_keep=7s", NULL }, NULL, "delivery" },
	{ "mta-sts on/off", { "mta_sts.enabled=false", NULL },
	    "mta_sts.enabled", NULL },
	{ "mta-sts fetch timeout", { "mta_sts.fetch_timeout=20s", NULL },
	    "mta_sts.fetch_timeout", NULL },
	{ "mta-sts wait", { "mta_sts.wait=1s", NULL }, NULL, "mta_sts" },
};

int
main(void)
{
	struct config old, nw;
	struct budget mem;
	char why[256], sum[512];

	load(&old, base);
	for (size_t i = 0; i < NELEM(cases); i++) {
		const char *ov[16];
		size_t n = 0;
		bool restart;
		int before = check_failures;

		printf("RUN %s\n", cases[i].name);
		for (size_t j = 0; base[j] != NULL; j++)
			ov[n++] = base[j];
		for (size_t j = 0; cases[i].ov[j] != NULL; j++)
			ov[n++] = cases[i].ov[j];
		ov[n] = NULL;
		load(&nw, ov);
		restart = gen_restart_key(&old, &nw, why, sizeof(why));
		if (cases[i].key != NULL) {
			CHECK(restart);
			CHECK(restart && strcmp(why, cases[i].key) == 0);
		} else {
			CHECK(!restart);
			gen_summary(&old, &nw, sum, sizeof(sum));
			if (cases[i].summary != NULL &&
			    strstr(sum, cases[i].summary) == NULL) {
				fprintf(stderr, "summary '%s' lacks '%s'\n", sum,
				    cases[i].summary);
				CHECK(!"summary");
			}
		}
		config_free(&nw);
		printf("%s %s\n", check_failures == before ? "PASS" : "FAIL",
		    cases[i].name);
	}

	/* References: one at create, the last release retires it. */
	printf("RUN references\n");
	int before = check_failures;

	budget_init(&mem, 1 << 20);
	{
		struct config_gen *g = gen_create(&old, NULL, &mem, 2);
		struct config_gen *h;
		uint64_t gid;

		CHECK_FATAL(g != NULL);
		gen_commit_id(g);
		gid = g->id;
		CHECK(old.spool == NULL);	/* moved in */
		CHECK(strcmp(g->cfg.spool, "/tmp/x") == 0);
		CHECK(g->scfg.hostname == g->cfg.hostname);
		CHECK(g->dcfg.routes == &g->cfg.routes);
		CHECK(g->dcfg.generation == g->id);
		CHECK(g->lfd[0] == -1 && g->lfd[1] == -1);
		CHECK(gen_hold(g) == g);
		CHECK(atomic_load(&g->refs) == 2);
		gen_release(g);
		gen_release(g);
		/* Retired, not freed: delivery may still point into it. */
		CHECK(strcmp(g->cfg.spool, "/tmp/x") == 0);
		gen_retired_free();

		load(&nw, base);
		h = gen_create(&nw, NULL, &mem, 1);
		CHECK_FATAL(h != NULL);
		CHECK(h->id == gid + 1);
		gen_discard(h);
		/* A refused one leaves no gap in the numbers. */
		load(&nw, base);
		h = gen_create(&nw, NULL, &mem, 1);
		CHECK_FATAL(h != NULL);
		CHECK(h->id == gid + 1);
		gen_discard(h);
	}
	printf("%s references\n", check_failures == before ? "PASS" : "FAIL");
	return check_done();
}
