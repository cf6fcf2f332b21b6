/*
 * shard_tls.c - inbound TLS on a shard's connections (lib/tls.h), and
 * the server context all shards share.
 *
 * The seam in shard.c: handle_recv() hands a TLS connection's ciphertext
 * to shard_tls_input() instead of the session, and conn_flush() fills the
 * send buffer with shard_tls_fill_tx() instead of swapping the session's
 * output in. Plaintext connections never come here: their path has no
 * extra copy. With TLS, OpenSSL reads the ciphertext from the recv buffer
 * itself and decrypts into the shard's scratch buffer, from which the
 * session copies only what it keeps; replies are encrypted from the
 * session's output straight into the records that are sent.
 *
 * Handshakes run on the shard, inline: a full TLS 1.3 handshake with an
 * ECDSA P-256 key costs the server one signature and one ECDH, about
 * 0.2 ms of CPU, which is less than what an offload to another thread
 * would cost in hand-overs for each of its two or three flights.
 *
 * A failed handshake is logged once, with the client's address and
 * OpenSSL's reason; the connection is closed after the alert leaves and
 * nothing else is spent on it.
 */
#include "shard_int.h"

#include <sys/stat.h>

/* The shard's plaintext scratch: one recv's records, with room to spare. */
#define SHARD_TLS_PLAIN_MAX (1u << 20)

/* Self-signed certificate and key made at first start, in the spool. */
#define SHARD_TLS_SELF_CERT "tls-selfsigned-cert.pem"
#define SHARD_TLS_SELF_KEY "tls-selfsigned-key.pem"

static bool
tls_listeners(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].policy.tls != SMTP_TLS_NONE)
			return true;
	return false;
}

/*
 * Without tls.cert: the certificate made earlier, or a new one. Fills
 * tc with the paths (in cert and key, which must have PATH_MAX bytes).
 */
static void
selfsigned(const struct config *cfg, char *cert, char *key)
{
	char why[PATH_MAX + 256];
	struct stat st;

	snprintf(cert, PATH_MAX, "%s/%s", cfg->spool, SHARD_TLS_SELF_CERT);
	snprintf(key, PATH_MAX, "%s/%s", cfg->spool, SHARD_TLS_SELF_KEY);
	if (stat(cert, &st) == 0 && stat(key, &st) == 0) {
		if (tls_check_pair(cert, key, why, sizeof(why)) == 0) {
			log_info("TLS: no tls.cert configured; using the "
			    "self-signed certificate in %s", cert);
			return;
		}
		log_warn("TLS: self-signed certificate unusable (%s); making "
		    "a new one", why);
	}
	if (tls_make_selfsigned(cfg->hostname, cert, key, why,
	    sizeof(why)) < 0)
		log_fatal("TLS: cannot make a self-signed certificate: %s",
		    why);
	log_info("TLS: no tls.cert configured; made a self-signed ECDSA "
	    "P-256 certificate for %s in %s (key in %s, mode 0600), used "
	    "from now on", cfg->hostname, cert, key);
}

struct tls_ctx *
shard_tls_load(const struct config *cfg, bool start, char *why, size_t whylen)
{
	struct tls_server_cfg tc = { .ncerts = 0 };
	char cert[PATH_MAX], key[PATH_MAX];

	why[0] = '\0';
	if (!tls_listeners(cfg))
		return NULL;
	if (cfg->tls.cert == NULL) {
		/* A reload uses the one made at start; it makes none. */
		if (start) {
			selfsigned(cfg, cert, key);
		} else {
			snprintf(cert, sizeof(cert), "%s/%s", cfg->spool,
			    SHARD_TLS_SELF_CERT);
			snprintf(key, sizeof(key), "%s/%s", cfg->spool,
			    SHARD_TLS_SELF_KEY);
		}
		tc.cert[0] = cert;
		tc.key[0] = key;
		tc.ncerts = 1;
	} else {
		tc.cert[tc.ncerts] = cfg->tls.cert;
		tc.key[tc.ncerts++] = cfg->tls.key;
		for (size_t i = 0; i < cfg->tls.nextra; i++) {
			assert(tc.ncerts < TLS_CERTS_MAX);
			tc.cert[tc.ncerts] = cfg->tls.extra[i].cert;
			tc.key[tc.ncerts++] = cfg->tls.extra[i].key;
		}
	}
	return tls_ctx_server(&tc, why, whylen);
}

struct tls_ctx *
shard_tls_setup(const struct config *cfg)
{
	char why[PATH_MAX + 256];
	struct tls_ctx *ctx = shard_tls_load(cfg, true, why, sizeof(why));

	if (ctx == NULL && why[0] != '\0')
		log_fatal("TLS: %s", why);
	return ctx;
}

bool
shard_tls_start(struct shard *sh, struct conn *c)
{
	assert(c->tls == NULL);
	(void)sh;
	/* The generation that made the listener's policy made its context. */
	assert(c->cg->tls != NULL);
	c->tls = tls_new(c->cg->tls, NULL);
	if (c->tls == NULL) {
		log_warn("%s: TLS: out of memory for a connection",
		    c->smtp.client_addr);
		return false;
	}
	c->tls_failed = false;
	return true;
}

/* The handshake just completed: tell the session, greet if implicit. */
static enum smtp_event
established(struct conn *c)
{
	struct tls *t = c->tls;

	smtp_session_tls_started(&c->smtp, tls_version(t), tls_cipher(t),
	    tls_cipher_bits(t));
	log_debug("%s: TLS %s %s%s", c->smtp.client_addr, tls_version(t),
	    tls_cipher(t), tls_resumed(t) ? " (resumed)" : "");
	if (c->smtp.pol->tls == SMTP_TLS_IMPLICIT)
		return smtp_session_greet(&c->smtp);
	return SMTP_EV_NONE;
}

enum smtp_event
shard_tls_input(struct shard *sh, struct conn *c, const char *p, size_t n)
{
	struct buf *plain = &sh->tls_plain;
	bool was = tls_established(c->tls);
	enum smtp_event ev = SMTP_EV_NONE;
	enum tls_status st;

	buf_reset(plain);
	plain->max = SHARD_TLS_PLAIN_MAX;
	st = tls_input(c->tls, p, n, plain);
	if (st == TLS_ERROR) {
		/* Only the alert OpenSSL queued leaves; no more records. */
		log_info("%s: TLS %s", c->smtp.client_addr, tls_why(c->tls));
		c->tls_failed = true;
		stats_add(&stats_shards[sh->id].tls_in_failed, 1);
		return SMTP_EV_CLOSE;
	}
	if (!was && tls_established(c->tls))
		stats_add(&stats_shards[sh->id].tls_in, 1);
	if (!was && tls_established(c->tls) &&
	    (ev = established(c)) == SMTP_EV_CLOSE)
		return ev;
	if (plain->len > 0)
		ev = smtp_session_input(&c->smtp, plain->data, plain->len);
	/* The client ended TLS: answer what came before, then close. */
	if (st == TLS_CLOSED && ev == SMTP_EV_NONE)
		ev = SMTP_EV_CLOSE;
	return ev;
}

int
shard_tls_fill_tx(struct conn *c)
{
	struct tls *t = c->tls;

	assert(c->tx_off == c->tx.len);
	if (!c->tls_failed && tls_established(t)) {
		if (c->smtp.out.len > 0) {
			if (tls_write(t, c->smtp.out.data, c->smtp.out.len) < 0) {
				log_warn("%s: TLS %s", c->smtp.client_addr,
				    tls_why(t));
				c->tls_failed = true;
				return -1;
			}
			buf_reset(&c->smtp.out);
		}
		/* After the last reply, close_notify (RFC 8446 6.1). */
		if (c->close_after_flush)
			tls_close(t);
	}
	/* Before the handshake, replies (a 421 at a timeout) stay unsent. */
	if (tls_pending(t) == 0)
		return 0;
	buf_reset(&c->tx);
	tls_take(t, &c->tx);
	c->tx_off = 0;
	return 1;
}
