/*
 * shard_listen.c - a shard's listening sockets, and how it takes a new
 * configuration generation (engine/gen.h) from a reload: the listeners
 * the generation keeps go on accepting on their sockets, those it
 * removes stop, those it adds start on sockets the reload bound.
 *
 * Sockets live in slots; a slot's multishot accept carries the slot's
 * number in its user_data, so a slot is reused only once its accept has
 * completed (slot_armed), and a completion for a slot that a reload
 * closed meanwhile is recognised (lfd < 0). See shard_int.h.
 */
#include "shard_int.h"
#include "../lib/efd.h"

#include <stdbool.h>
#include <stdio.h>

int
shard_listen_socket(const struct listen_cfg *l)
{
	int fd, one = 1;

	fd = socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (l->sa.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&l->sa, l->salen) < 0 ||
	    listen(fd, 4096) < 0)
		goto fail;
	return fd;
fail:
	one = -errno;
	close(fd);
	return one;
}

/*
 * Is a socket already listening on this address and port (or on the
 * wildcard address and this port)? Read from /proc/net/tcp or tcp6, which
 * print each address as 32-bit words in host order; only sockets in LISTEN
 * state (0A) count, so an earlier run's connections in TIME_WAIT do not.
 */
bool
shard_port_in_use(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *a4 = (const void *)ss;
	const struct sockaddr_in6 *a6 = (const void *)ss;
	bool v6 = ss->ss_family == AF_INET6, found = false;
	unsigned port = ntohs(v6 ? a6->sin6_port : a4->sin_port);
	uint32_t want[4] = { 0 }, got[4];
	char line[512], hex[33];
	unsigned p, st, i, nw = v6 ? 4 : 1;
	FILE *f;

	if (v6)
		memcpy(want, &a6->sin6_addr, 16);
	else
		want[0] = a4->sin_addr.s_addr;
	f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
	if (f == NULL)
		return false;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, " %*u: %32[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x",
		    hex, &p, &st) != 3 || strlen(hex) != nw * 8)
			continue;
		if (p != port || st != 0x0a)
			continue;
		for (i = 0; i < nw; i++) {
			char w[9];

			memcpy(w, hex + i * 8, 8);
			w[8] = '\0';
			got[i] = (uint32_t)strtoul(w, NULL, 16);
		}
		found = memcmp(got, want, nw * 4) == 0;
		for (i = 0; i < nw && !found; i++)
			if (got[i] != 0)
				break;
		if (i == nw)
			found = true;	/* a wildcard listener */
	}
	fclose(f);
	return found;
}

void
shard_arm_accept(struct shard *sh, unsigned i)
{
	struct io_uring_sqe *sqe = get_sqe(sh);

	assert(sh->lfd[i] >= 0);
	assert(!sh->slot_armed[i]);
	io_uring_prep_multishot_accept(sqe, sh->lfd[i], NULL, NULL,
	    SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, uring_ud(OP_ACCEPT, i, 0));
	sh->accepts++;
	sh->slot_armed[i] = true;
}

/* Stop accepting on slot i: its accept is cancelled, its socket closed. */
void
shard_slot_close(struct shard *sh, unsigned i)
{
	struct io_uring_sqe *sqe;

	if (sh->lfd[i] < 0)
		return;
	if (sh->slot_armed[i]) {
		sqe = get_sqe(sh);
		io_uring_prep_cancel64(sqe, uring_ud(OP_ACCEPT, i, 0), 0);
		io_uring_sqe_set_data64(sqe, uring_ud(OP_CANCEL, 0, 0));
	}
	/* The pending accept holds the socket until it is cancelled;
	 * after that the kernel refuses new connections. */
	close(sh->lfd[i]);
	sh->lfd[i] = -1;
	sh->slot_lis[i] = -1;
	sh->accept_retry[i] = false;
}

/*
 * A reload's generation, at a safe point (no completion is being
 * handled): the listeners it keeps keep their sockets (matched by
 * address, so their accepts carry on), those it removes stop accepting
 * (their open connections go on under the generation they hold), and
 * those it adds start, on the sockets the main thread bound for them.
 * New connections get g from here on; delivery reads its limits from g
 * too, while its destinations and connections stay as they are.
 */
void
shard_swap_gen(struct shard *sh, struct config_gen *g)
{
	const struct config *old = sh->cfg, *cfg = &g->cfg;
	int map[SHARD_LISTEN_MAX];
	bool kept[SHARD_LISTEN_MAX] = { false };
	struct config_gen *prev = sh->gen;
	unsigned i, j, added = 0, removed = 0;

	assert(cfg->nlisten <= SHARD_LISTEN_MAX);
	for (j = 0; j < cfg->nlisten; j++) {
		map[j] = -1;
		for (i = 0; i < sh->nlisten; i++) {
			int l = sh->slot_lis[i];

			if (l >= 0 && !kept[i] && old->listen[l].salen ==
			    cfg->listen[j].salen && memcmp(&old->listen[l].sa,
			    &cfg->listen[j].sa, cfg->listen[j].salen) == 0) {
				map[j] = (int)i;
				kept[i] = true;
				break;
			}
		}
	}
	/* Gone first: their slots may serve the new ones once free. */
	for (i = 0; i < sh->nlisten; i++)
		if (sh->slot_lis[i] >= 0 && !kept[i]) {
			shard_slot_close(sh, i);
			removed++;
		}
	for (j = 0; j < cfg->nlisten; j++) {
		int *fdp = &g->lfd[j * g->nshards + sh->id];

		if (map[j] >= 0) {
			sh->slot_lis[map[j]] = (int)j;
			continue;
		}
		for (i = 0; i < SHARD_LISTEN_MAX; i++)
			if (sh->lfd[i] < 0 && !sh->slot_armed[i])
				break;
		if (*fdp < 0 || i == SHARD_LISTEN_MAX) {
			/* The main thread bound one per shard, checked the
			 * count: neither can happen but is not fatal. */
			log_warn("shard %u: no socket for listener %s",
			    sh->id, cfg->listen[j].address);
			continue;
		}
		sh->lfd[i] = *fdp;
		*fdp = -1;
		sh->slot_lis[i] = (int)j;
		if (i >= sh->nlisten)
			sh->nlisten = i + 1;
		if (sh->accepting && !sh->stopping)
			shard_arm_accept(sh, i);
		added++;
	}
	sh->gen = g;
	sh->cfg = cfg;
	sh->scfg = &g->scfg;
	sh->dcfg = g->dcfg;
	if (sh->deliver != NULL)
		deliver_reconfigure(sh->deliver);
	shard_dkim_prune(sh);
	log_debug("shard %u: configuration generation %llu (listeners +%u "
	    "-%u)", sh->id, (unsigned long long)g->id, added, removed);
	gen_release(prev);
}

void
shard_reload(struct shard *sh, struct config_gen *g)
{
	int rc;

	gen_release(atomic_exchange(&sh->gen_next, g));
	if ((rc = efd_wake(sh->efd)) < 0)
		log_warn("shard %u: wake: %s", sh->id, strerror(-rc));
}

bool
shard_reload_taken(struct shard *sh)
{
	return atomic_load(&sh->gen_next) == NULL;
}
