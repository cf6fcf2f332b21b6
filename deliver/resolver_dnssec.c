/*
 * resolver_dnssec.c - dns.dnssec: validate. sluice checks DNSSEC itself,
 * with ldns doing the cryptography (ldns_verify) and the NSEC denial
 * logic (ldns_dnssec_verify_denial), so that no validating resolver is
 * needed: the queries carry DO and CD, and the server may be a plain
 * recursive one, or the zones' authoritative server itself.
 *
 * What is validated, for every answer a lookup used (MX, A, AAAA, TLSA,
 * and each CNAME step), from the trust anchor (dns.trust_anchor: DS or
 * DNSKEY records of one zone) down:
 * - a record set with RRSIGs: the signer's DNSKEY set must be trusted
 *   (the anchor zone: a key matching the anchor; below it: a key matching
 *   the zone's DS set, itself validated in the parent, recursively) and
 *   sign the set now (inception and expiration are checked);
 * - a denial (NXDOMAIN, NODATA): NSEC records, their signatures as above,
 *   and ldns_dnssec_verify_denial() for the question;
 * - unsigned data: insecure only if a secure NSEC proves a delegation
 *   without DS between the anchor and the name (RFC 4035 section 5.2),
 *   else bogus. A zone whose DS is proven absent is insecure as a whole.
 * Not validated: NSEC3 (a denial by NSEC3 is taken as bogus, so zones
 * signed with NSEC3 are only usable where nothing needs a denial:
 * docs/dns.md), wildcard expansions beyond what ldns checks, and a name
 * outside the anchor's tree is insecure. The fetched DS and DNSKEY sets
 * are cached like any answer; the verdicts are recomputed per lookup.
 *
 * How a lookup waits: every answer it used is recorded; once all are in,
 * rslv_val_step() walks them and asks (rslv_request) for each DS or
 * DNSKEY set it lacks; when those are in it walks again, until nothing
 * is missing (VAL_FETCH_MAX sets at most: past that, bogus), then
 * rslv_val_apply() turns the verdicts into the lookup's marks.
 */
#include "resolver_int.h"

#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAL_ZONES_MAX	16	/* zones judged in one walk */
#define VAL_DEPTH_MAX	16	/* DS/DNSKEY links from the anchor */
#define VAL_ANCHOR_MAX	64	/* records in a trust anchor file */

/* Worse is larger: a walk's verdict is the worst of its parts. */
enum vres {
	V_SECURE = 0,
	V_INSECURE,
	V_BOGUS,
	V_NEED,		/* a DS or DNSKEY set is still being fetched */
};

struct vzone {
	ldns_rdf *name;		/* owned: the messages come and go */
	enum vres res;
	ldns_rr_list *keys;	/* V_SECURE: its DNSKEY set (not the rrs) */
};

/*
 * What one lookup's walks have worked out, kept from walk to walk (a
 * walk runs again each time the DS and DNSKEY sets it asked for are in):
 * the fetched messages parsed, and each zone's verdict and keys, so that
 * a zone's key set is verified once per lookup, not once per walk. A
 * fetched message never changes once in, so neither does what follows
 * from it; a zone still waiting for one (V_NEED) is not kept.
 */
struct val_memo {
	struct vzone z[VAL_ZONES_MAX];
	unsigned nz;
	ldns_pkt *pk[VAL_FETCH_MAX];	/* fetched messages, parsed */
};

struct vctx {
	struct resolver *r;
	struct lookup *lk;
	struct rslv_val *v;
	unsigned issued;	/* fetches asked in this walk */
	struct val_memo *m;	/* v's */
};

static enum vres
worse(enum vres a, enum vres b)
{
	return a > b ? a : b;
}

/* ---- the trust anchor ---------------------------------------------------- */

void *
rslv_anchor_load(const char *path, char *why, size_t whylen)
{
	ldns_rr_list *l;
	ldns_rdf *origin = NULL, *prev = NULL;
	uint32_t ttl = 3600;
	int line = 1;
	FILE *f;

	if (path == NULL || (f = fopen(path, "r")) == NULL) {
		snprintf(why, whylen, "trust anchor %s: cannot open it",
		    path != NULL ? path : "(none)");
		return NULL;
	}
	if ((l = ldns_rr_list_new()) == NULL) {
		fclose(f);
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	while (!feof(f) && ldns_rr_list_rr_count(l) < VAL_ANCHOR_MAX) {
		ldns_rr *rr = NULL;
		ldns_status st = ldns_rr_new_frm_fp_l(&rr, f, &ttl, &origin,
		    &prev, &line);

		if (st == LDNS_STATUS_SYNTAX_EMPTY ||
		    st == LDNS_STATUS_SYNTAX_TTL ||
		    st == LDNS_STATUS_SYNTAX_ORIGIN ||
		    st == LDNS_STATUS_SYNTAX_INCLUDE)
			continue;
		if (st != LDNS_STATUS_OK) {
			if (feof(f) && ldns_rr_list_rr_count(l) > 0)
				break;	/* trailing blanks or comments */
			snprintf(why, whylen, "trust anchor %s:%d: %s", path,
			    line, ldns_get_errorstr_by_id(st));
			goto fail;
		}
		if ((ldns_rr_get_type(rr) != LDNS_RR_TYPE_DS &&
		    ldns_rr_get_type(rr) != LDNS_RR_TYPE_DNSKEY) ||
		    (ldns_rr_list_rr_count(l) > 0 && ldns_dname_compare(
		    ldns_rr_owner(rr), ldns_rr_owner(ldns_rr_list_rr(l, 0)))
		    != 0)) {
			snprintf(why, whylen, "trust anchor %s:%d: want DS or "
			    "DNSKEY records of one zone", path, line);
			ldns_rr_free(rr);
			goto fail;
		}
		ldns_rr_list_push_rr(l, rr);
	}
	fclose(f);
	ldns_rdf_deep_free(origin);
	ldns_rdf_deep_free(prev);
	if (ldns_rr_list_rr_count(l) == 0) {
		snprintf(why, whylen, "trust anchor %s: no DS or DNSKEY record",
		    path);
		ldns_rr_list_deep_free(l);
		return NULL;
	}
	return l;
fail:
	fclose(f);
	ldns_rdf_deep_free(origin);
	ldns_rdf_deep_free(prev);
	ldns_rr_list_deep_free(l);
	return NULL;
}

void
rslv_anchor_free(void *anchors)
{
	if (anchors != NULL)
		ldns_rr_list_deep_free(anchors);
}

int
resolver_anchor_check(const char *path, char *why, size_t whylen)
{
	void *a = rslv_anchor_load(path, why, whylen);

	rslv_anchor_free(a);
	return a != NULL ? 0 : -1;
}

/* ---- what a lookup gathers ----------------------------------------------- */

static uint8_t *
dup_wire(const struct centry *e)
{
	uint8_t *w;

	if (e->wire == NULL || e->kind == DNS_KIND_ERROR ||
	    (w = malloc(e->wirelen)) == NULL)
		return NULL;
	memcpy(w, e->wire, e->wirelen);
	return w;
}

void
rslv_val_record(struct lookup *lk, int sub, const struct centry *e)
{
	struct rslv_val *v = lk->val;

	if (SUB_IS_VAL(sub)) {
		struct val_fetch *f = &v->f[sub - SUB_VAL(0)];

		assert((unsigned)(sub - SUB_VAL(0)) < v->nf);
		free(f->m.wire);
		f->m.wire = dup_wire(e);
		f->m.len = f->m.wire != NULL ? e->wirelen : 0;
		f->done = true;
		return;
	}
	/* A failed query is a failure already: nothing to judge. */
	if (e->kind == DNS_KIND_ERROR)
		return;
	if (v->nans == VAL_ANS_MAX) {
		v->overflow = true;
		return;
	}
	v->ans[v->nans].sub = sub;
	v->ans[v->nans].wire = dup_wire(e);
	v->ans[v->nans].len = v->ans[v->nans].wire != NULL ? e->wirelen : 0;
	v->nans++;
}

void
rslv_val_free(struct lookup *lk)
{
	struct rslv_val *v = lk->val;

	if (v == NULL)
		return;
	for (unsigned i = 0; i < v->nans; i++)
		free(v->ans[i].wire);
	for (unsigned i = 0; i < v->nf; i++)
		free(v->f[i].m.wire);
	if (v->memo != NULL) {
		for (unsigned i = 0; i < v->memo->nz; i++) {
			ldns_rr_list_free(v->memo->z[i].keys);
			ldns_rdf_deep_free(v->memo->z[i].name);
		}
		for (unsigned i = 0; i < VAL_FETCH_MAX; i++)
			ldns_pkt_free(v->memo->pk[i]);
		free(v->memo);
	}
	free(v);
	lk->val = NULL;
}

/* ---- one walk ------------------------------------------------------------ */

/* "a.b" of an ldns name, lower case, no trailing dot; false if unfit. */
static bool
name_text(const ldns_rdf *d, char out[DNS_NAME_MAX + 1])
{
	char *s = ldns_rdf2str(d);
	size_t n;

	if (s == NULL)
		return false;
	n = strlen(s);
	if (n > 1 && s[n - 1] == '.')
		s[--n] = '\0';
	if (n == 0 || n > DNS_NAME_MAX) {
		free(s);
		return false;
	}
	for (size_t i = 0; i <= n; i++)
		out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
	free(s);
	return true;
}

/*
 * The fetched (name, type) message, parsed; NULL with *st V_NEED (asked
 * now, or still on its way) or V_BOGUS (the fetch failed, or no room).
 */
static ldns_pkt *
fetched(struct vctx *c, const ldns_rdf *name, uint16_t type, enum vres *st)
{
	struct rslv_val *v = c->v;
	char text[DNS_NAME_MAX + 1];
	unsigned k;

	*st = V_BOGUS;
	if (!name_text(name, text))
		return NULL;
	for (k = 0; k < v->nf; k++)
		if (v->f[k].type == type && strcmp(v->f[k].name, text) == 0)
			break;
	if (k == v->nf) {
		if (v->nf == VAL_FETCH_MAX)
			return NULL;
		snprintf(v->f[k].name, sizeof(v->f[k].name), "%s", text);
		v->f[k].type = type;
		v->nf++;
		c->issued++;
		*st = V_NEED;
		rslv_request(c->r, c->lk, SUB_VAL(k), text, type);
		return NULL;
	}
	if (!v->f[k].done) {
		*st = V_NEED;
		return NULL;
	}
	if (v->f[k].m.wire == NULL)
		return NULL;
	if (c->m->pk[k] == NULL && ldns_wire2pkt(&c->m->pk[k], v->f[k].m.wire,
	    v->f[k].m.len) != LDNS_STATUS_OK) {
		c->m->pk[k] = NULL;
		return NULL;
	}
	return c->m->pk[k];
}

/* The records of (owner, type) in a section, and the RRSIGs over them. */
static void
rrset_of(const ldns_rr_list *sec, const ldns_rdf *owner, ldns_rr_type type,
    ldns_rr_list *set, ldns_rr_list *sigs)
{
	for (size_t i = 0; i < ldns_rr_list_rr_count(sec); i++) {
		ldns_rr *rr = ldns_rr_list_rr(sec, i);
		ldns_rdf *cov;

		if (ldns_dname_compare(ldns_rr_owner(rr), owner) != 0)
			continue;
		if (ldns_rr_get_type(rr) == type) {
			ldns_rr_list_push_rr(set, rr);
			continue;
		}
		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_RRSIG &&
		    (cov = ldns_rr_rrsig_typecovered(rr)) != NULL &&
		    ldns_rdf2rr_type(cov) == type)
			ldns_rr_list_push_rr(sigs, rr);
	}
}

static bool
under(const ldns_rdf *name, const ldns_rdf *zone)
{
	return ldns_dname_compare(name, zone) == 0 ||
	    ldns_dname_is_subdomain(name, zone);
}

/* An NSEC type bitmap of a delegation without DS: NS, no DS, no SOA. */
static bool
deleg_bits(const ldns_rdf *bm)
{
	return ldns_nsec_bitmap_covers_type(bm, LDNS_RR_TYPE_NS) &&
	    !ldns_nsec_bitmap_covers_type(bm, LDNS_RR_TYPE_DS) &&
	    !ldns_nsec_bitmap_covers_type(bm, LDNS_RR_TYPE_SOA);
}

/* Has the authority section an NSEC at zone saying NS, no DS, no SOA? */
static bool
delegation_nsec(ldns_pkt *p, const ldns_rdf *zone)
{
	const ldns_rr_list *auth = ldns_pkt_authority(p);

	for (size_t i = 0; i < ldns_rr_list_rr_count(auth); i++) {
		ldns_rr *n = ldns_rr_list_rr(auth, i);
		ldns_rdf *bm;

		if (ldns_rr_get_type(n) != LDNS_RR_TYPE_NSEC ||
		    ldns_dname_compare(ldns_rr_owner(n), zone) != 0 ||
		    (bm = ldns_nsec_get_bitmap(n)) == NULL)
			continue;
		return deleg_bits(bm);
	}
	return false;
}

/* Does a signature in sigs name zone as its signer? */
static bool
signed_by(const ldns_rr_list *sigs, const ldns_rdf *zone)
{
	for (size_t i = 0; i < ldns_rr_list_rr_count(sigs); i++) {
		ldns_rdf *s = ldns_rr_rrsig_signame(ldns_rr_list_rr(sigs, i));

		if (s != NULL && ldns_dname_compare(s, zone) == 0)
			return true;
	}
	return false;
}

static const ldns_rdf *
anchor_zone(const struct vctx *c)
{
	return ldns_rr_owner(ldns_rr_list_rr(c->r->anchors, 0));
}

static enum vres zone_keys(struct vctx *c, const ldns_rdf *zone,
    ldns_rr_list **keys, unsigned depth);
static enum vres insecure_proof(struct vctx *c, const ldns_rdf *owner,
    unsigned depth);

/* A record set and its RRSIGs, owned by owner. */
static enum vres
check_rrset(struct vctx *c, ldns_rr_list *set, ldns_rr_list *sigs,
    const ldns_rdf *owner, unsigned depth)
{
	ldns_rr_list *keys = NULL;
	const ldns_rdf *signer;
	enum vres z;

	if (ldns_rr_list_rr_count(sigs) == 0)
		return insecure_proof(c, owner, depth);
	signer = ldns_rr_rrsig_signame(ldns_rr_list_rr(sigs, 0));
	/*
	 * The signer is the zone: the owner's name or an ancestor, and
	 * inside the anchor's tree when the owner is (a signer above the
	 * anchor would make signed data look merely insecure).
	 */
	if (signer == NULL || !under(owner, signer) ||
	    (under(owner, anchor_zone(c)) && !under(signer, anchor_zone(c))))
		return V_BOGUS;
	if ((z = zone_keys(c, signer, &keys, depth + 1)) != V_SECURE)
		return z;
	return ldns_verify(set, sigs, keys, NULL) == LDNS_STATUS_OK ?
	    V_SECURE : V_BOGUS;
}

/*
 * An NSEC that cannot speak for the question, whatever its signature
 * (RFC 4035 section 5.4; RFC 6840 section 4.1): one at a delegation (NS,
 * no SOA) denies nothing below the cut, which is the child's; one at a
 * zone apex (SOA) denies no DS there, which is the parent's to deny.
 */
static bool
wrong_side(const ldns_rr *nsec, const ldns_rr *q)
{
	const ldns_rdf *owner = ldns_rr_owner(nsec), *qn = ldns_rr_owner(q);
	ldns_rdf *bm = ldns_nsec_get_bitmap(nsec);
	bool ns, soa;

	if (bm == NULL)
		return true;
	ns = ldns_nsec_bitmap_covers_type(bm, LDNS_RR_TYPE_NS);
	soa = ldns_nsec_bitmap_covers_type(bm, LDNS_RR_TYPE_SOA);
	if (ns && !soa && ldns_dname_is_subdomain(qn, owner))
		return true;
	return soa && ldns_rr_get_type(q) == LDNS_RR_TYPE_DS &&
	    ldns_dname_compare(owner, qn) == 0;
}

/* NSEC records of a denial, each checked, then the denial itself. */
static enum vres
check_denial(struct vctx *c, ldns_pkt *p, ldns_rr *q, unsigned depth)
{
	const ldns_rr_list *auth = ldns_pkt_authority(p);
	ldns_rr_list *nsecs = ldns_rr_list_new(), *sigs = ldns_rr_list_new();
	enum vres res = V_SECURE;
	bool any_sig = false, nsec3 = false;

	if (nsecs == NULL || sigs == NULL) {
		res = V_BOGUS;
		goto out;
	}
	for (size_t i = 0; i < ldns_rr_list_rr_count(auth); i++) {
		ldns_rr *rr = ldns_rr_list_rr(auth, i);

		any_sig |= ldns_rr_get_type(rr) == LDNS_RR_TYPE_RRSIG;
		nsec3 |= ldns_rr_get_type(rr) == LDNS_RR_TYPE_NSEC3;
		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_NSEC)
			ldns_rr_list_push_rr(nsecs, rr);
	}
	if (ldns_rr_list_rr_count(nsecs) == 0) {
		/* Unsigned denial: only from an insecure zone. NSEC3: not
		 * validated here, so not trusted either way. */
		res = nsec3 || any_sig ? V_BOGUS :
		    insecure_proof(c, ldns_rr_owner(q), depth);
		goto out;
	}
	for (size_t i = 0; i < ldns_rr_list_rr_count(nsecs); i++) {
		ldns_rr *n = ldns_rr_list_rr(nsecs, i);
		ldns_rr_list *set, *s;

		if (wrong_side(n, q)) {
			res = V_BOGUS;
			goto out;
		}
		set = ldns_rr_list_new();
		s = ldns_rr_list_new();

		if (set == NULL || s == NULL) {
			ldns_rr_list_free(set);
			ldns_rr_list_free(s);
			res = V_BOGUS;
			goto out;
		}
		rrset_of(auth, ldns_rr_owner(n), LDNS_RR_TYPE_NSEC, set, s);
		for (size_t j = 0; j < ldns_rr_list_rr_count(s); j++)
			ldns_rr_list_push_rr(sigs, ldns_rr_list_rr(s, j));
		/* Signed NSEC only: one without RRSIG proves nothing. */
		res = worse(res, ldns_rr_list_rr_count(s) == 0 ? V_BOGUS :
		    check_rrset(c, set, s, ldns_rr_owner(n), depth));
		ldns_rr_list_free(set);
		ldns_rr_list_free(s);
	}
	if (res == V_SECURE && ldns_dnssec_verify_denial(q, nsecs, sigs) !=
	    LDNS_STATUS_OK)
		res = V_BOGUS;
out:
	ldns_rr_list_free(nsecs);
	ldns_rr_list_free(sigs);
	return res;
}

/*
 * RFC 4035 section 5.2: is there, between the anchor and owner, a
 * delegation whose DS is securely denied? Then owner's data is
 * insecure; else unsigned data where signatures belong is bogus.
 */
static enum vres
insecure_proof(struct vctx *c, const ldns_rdf *owner, unsigned depth)
{
	const ldns_rdf *top = anchor_zone(c);
	ldns_rdf *chain[DNS_NAME_MAX / 2 + 1];
	unsigned n = 0;
	enum vres res = V_BOGUS;

	if (!under(owner, top))
		return V_INSECURE;	/* outside the anchor's tree */
	if (depth > VAL_DEPTH_MAX)
		return V_BOGUS;
	/* owner and its ancestors below the anchor, owner first. */
	chain[n] = ldns_rdf_clone(owner);
	while (chain[n] != NULL && ldns_dname_compare(chain[n], top) != 0 &&
	    n + 1 < sizeof(chain) / sizeof(chain[0])) {
		chain[n + 1] = ldns_dname_left_chop(chain[n]);
		n++;
	}
	if (chain[n] == NULL)
		goto out;
	/* From the top down; chain[n] is the anchor itself. */
	for (unsigned i = n; i-- > 0;) {
		const ldns_rdf *l = chain[i];
		const ldns_rr_list *auth, *an;
		enum vres st;
		ldns_pkt *p = fetched(c, l, LDNS_RR_TYPE_DS, &st);
		bool has_ds = false;

		if (p == NULL) {
			res = st;
			goto out;
		}
		an = ldns_pkt_answer(p);
		for (size_t j = 0; j < ldns_rr_list_rr_count(an); j++)
			has_ds |= ldns_rr_get_type(ldns_rr_list_rr(an, j)) ==
			    LDNS_RR_TYPE_DS;
		if (has_ds)
			continue;	/* a signed delegation: go deeper */
		auth = ldns_pkt_authority(p);
		for (size_t j = 0; j < ldns_rr_list_rr_count(auth); j++) {
			ldns_rr *nsec = ldns_rr_list_rr(auth, j);
			ldns_rr_list *set, *sigs;
			ldns_rdf *bm;
			bool deleg;

			if (ldns_rr_get_type(nsec) != LDNS_RR_TYPE_NSEC ||
			    ldns_dname_compare(ldns_rr_owner(nsec), l) != 0)
				continue;
			bm = ldns_nsec_get_bitmap(nsec);
			deleg = bm != NULL && deleg_bits(bm);
			if (!deleg)
				break;	/* not a delegation without DS */
			set = ldns_rr_list_new();
			sigs = ldns_rr_list_new();
			st = V_BOGUS;
			if (set != NULL && sigs != NULL) {
				rrset_of(auth, l, LDNS_RR_TYPE_NSEC, set, sigs);
				/* The parent's NSEC, not one l signs. */
				if (ldns_rr_list_rr_count(sigs) > 0 &&
				    !signed_by(sigs, l))
					st = check_rrset(c, set, sigs, l,
					    depth);
			}
			ldns_rr_list_free(set);
			ldns_rr_list_free(sigs);
			/* A proven delegation without DS: insecure below. */
			res = st == V_SECURE || st == V_INSECURE ?
			    V_INSECURE : st;
			goto out;
		}
	}
out:
	for (unsigned i = 0; i <= n && i < sizeof(chain) / sizeof(chain[0]);
	    i++)
		ldns_rdf_deep_free(chain[i]);
	return res;
}

/*
 * Is zone's DS set secure (then *ds: it), or securely absent (the zone
 * is insecure: RFC 4035 section 5.2)?
 */
static enum vres
ds_of(struct vctx *c, const ldns_rdf *zone, ldns_rr_list *ds, unsigned depth)
{
	ldns_rr_list *sigs = ldns_rr_list_new();
	enum vres st;
	ldns_pkt *p = fetched(c, zone, LDNS_RR_TYPE_DS, &st);

	if (p == NULL || sigs == NULL) {
		ldns_rr_list_free(sigs);
		return p == NULL ? st : V_BOGUS;
	}
	rrset_of(ldns_pkt_answer(p), zone, LDNS_RR_TYPE_DS, ds, sigs);
	if (ldns_rr_list_rr_count(ds) > 0) {
		/* The parent signs a DS set, never the zone itself. */
		st = signed_by(sigs, zone) ? V_BOGUS :
		    check_rrset(c, ds, sigs, zone, depth);
	} else {
		ldns_rr *q = ldns_rr_list_rr(ldns_pkt_question(p), 0);

		st = q == NULL ? V_BOGUS : check_denial(c, p, q, depth);
		/*
		 * Securely no DS at a delegation (its NSEC has NS): the zone
		 * below is insecure. No DS at a name that is no zone cut
		 * says nothing of signatures claiming it as their zone.
		 */
		if (st == V_SECURE)
			st = delegation_nsec(p, zone) ? V_INSECURE : V_BOGUS;
	}
	ldns_rr_list_free(sigs);
	return st;
}

/* zone's DNSKEY set, if it is trusted (V_SECURE), memoised per walk. */
static enum vres
zone_keys(struct vctx *c, const ldns_rdf *zone, ldns_rr_list **keys,
    unsigned depth)
{
	ldns_rr_list *dnskeys = NULL, *ksigs = NULL, *trust = NULL;
	ldns_rr_list *matched = NULL, *ds = NULL;
	const ldns_rdf *top = anchor_zone(c);
	struct vzone *z;
	enum vres res;
	ldns_pkt *p;

	for (unsigned i = 0; i < c->m->nz; i++)
		if (ldns_dname_compare(c->m->z[i].name, zone) == 0) {
			*keys = c->m->z[i].keys;
			return c->m->z[i].res;
		}
	if (depth > VAL_DEPTH_MAX)
		return V_BOGUS;
	if (!under(zone, top))
		return V_INSECURE;	/* no chain from the anchor */
	if ((p = fetched(c, zone, LDNS_RR_TYPE_DNSKEY, &res)) == NULL)
		return res;
	if ((dnskeys = ldns_rr_list_new()) == NULL ||
	    (ksigs = ldns_rr_list_new()) == NULL ||
	    (matched = ldns_rr_list_new()) == NULL ||
	    (ds = ldns_rr_list_new()) == NULL) {
		res = V_BOGUS;
		goto out;
	}
	rrset_of(ldns_pkt_answer(p), zone, LDNS_RR_TYPE_DNSKEY, dnskeys,
	    ksigs);
	if (ldns_dname_compare(zone, top) == 0) {
		trust = c->r->anchors;
		res = V_SECURE;
	} else {
		res = ds_of(c, zone, ds, depth + 1);
		trust = ds;
	}
	if (res == V_NEED)
		goto out;	/* not memoised: asked again next walk */
	if (res == V_SECURE) {
		/* A key the anchor or the DS names, signing the set. */
		for (size_t i = 0; i < ldns_rr_list_rr_count(dnskeys); i++)
			for (size_t j = 0; j < ldns_rr_list_rr_count(trust);
			    j++)
				if (ldns_rr_compare_ds(ldns_rr_list_rr(dnskeys,
				    i), ldns_rr_list_rr(trust, j))) {
					ldns_rr_list_push_rr(matched,
					    ldns_rr_list_rr(dnskeys, i));
					break;
				}
		if (ldns_rr_list_rr_count(matched) == 0 ||
		    ldns_verify(dnskeys, ksigs, matched, NULL) !=
		    LDNS_STATUS_OK)
			res = V_BOGUS;
	}
	if (c->m->nz < VAL_ZONES_MAX &&
	    (c->m->z[c->m->nz].name = ldns_rdf_clone(zone)) != NULL) {
		z = &c->m->z[c->m->nz++];
		z->res = res;
		z->keys = res == V_SECURE ? dnskeys : NULL;
		if (res == V_SECURE)
			dnskeys = NULL;	/* the memo owns the list */
		*keys = z->keys;
	} else if (res == V_SECURE) {
		res = V_BOGUS;		/* nowhere to keep it */
	}
out:
	ldns_rr_list_free(dnskeys);
	ldns_rr_list_free(ksigs);
	ldns_rr_list_free(matched);
	ldns_rr_list_free(ds);
	return res;
}

/* One answer message: each record set of its answer, or its denial. */
static enum vres
check_msg(struct vctx *c, const struct val_msg *m)
{
	ldns_pkt *p = NULL;
	const ldns_rr_list *an;
	ldns_rr *q;
	enum vres res = V_SECURE;
	bool any = false;

	if (m->wire == NULL ||
	    ldns_wire2pkt(&p, m->wire, m->len) != LDNS_STATUS_OK)
		return V_BOGUS;
	q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
	an = ldns_pkt_answer(p);
	for (size_t i = 0; q != NULL && i < ldns_rr_list_rr_count(an); i++) {
		ldns_rr *rr = ldns_rr_list_rr(an, i);
		ldns_rr_list *set, *sigs;
		bool seen = false;

		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_RRSIG)
			continue;
		for (size_t j = 0; j < i && !seen; j++) {
			ldns_rr *o = ldns_rr_list_rr(an, j);

			seen = ldns_rr_get_type(o) == ldns_rr_get_type(rr) &&
			    ldns_dname_compare(ldns_rr_owner(o),
			    ldns_rr_owner(rr)) == 0;
		}
		if (seen)
			continue;
		any = true;
		set = ldns_rr_list_new();
		sigs = ldns_rr_list_new();
		if (set == NULL || sigs == NULL)
			res = V_BOGUS;
		else {
			rrset_of(an, ldns_rr_owner(rr), ldns_rr_get_type(rr),
			    set, sigs);
			res = worse(res, check_rrset(c, set, sigs,
			    ldns_rr_owner(rr), 0));
		}
		ldns_rr_list_free(set);
		ldns_rr_list_free(sigs);
	}
	if (q == NULL)
		res = V_BOGUS;
	else if (!any)
		res = check_denial(c, p, q, 0);
	ldns_pkt_free(p);
	return res;
}

/* False without memory for the memo: the lookup is then bogus. */
static bool
ctx_init(struct vctx *c, struct resolver *r, struct lookup *lk)
{
	memset(c, 0, sizeof(*c));
	c->r = r;
	c->lk = lk;
	c->v = lk->val;
	if (c->v->memo == NULL &&
	    (c->v->memo = calloc(1, sizeof(*c->v->memo))) == NULL) {
		c->v->overflow = true;
		return false;
	}
	c->m = c->v->memo;
	return true;
}

unsigned
rslv_val_step(struct resolver *r, struct lookup *lk)
{
	struct vctx c;
	unsigned n;

	if (!ctx_init(&c, r, lk))
		return 0;	/* judged bogus at once */
	for (unsigned i = 0; i < lk->val->nans; i++)
		(void)check_msg(&c, &lk->val->ans[i]);
	n = c.issued;
	return n;
}

static uint8_t
sec_of(enum vres v)
{
	return v == V_SECURE ? RESOLVE_SEC_SECURE : v == V_INSECURE ?
	    RESOLVE_SEC_INSECURE : RESOLVE_SEC_BOGUS;
}

void
rslv_val_apply(struct resolver *r, struct lookup *lk)
{
	struct rslv_val *v = lk->val;
	enum vres mx = V_SECURE, tlsa[RESOLVE_MX_MAX];
	bool mx_seen = false;
	struct vctx c;

	for (unsigned i = 0; i < RESOLVE_MX_MAX; i++)
		tlsa[i] = V_SECURE;
	(void)ctx_init(&c, r, lk);	/* without memory: overflow, bogus */
	for (unsigned i = 0; i < v->nans; i++) {
		const struct val_msg *m = &v->ans[i];
		enum vres res = v->overflow ? V_BOGUS : check_msg(&c, m);
		unsigned t;

		if (res == V_NEED)
			res = V_BOGUS;	/* what could not be fetched */
		if (m->sub == SUB_MX) {
			mx = worse(mx, res);
			mx_seen = true;
		} else if (SUB_IS_TLSA(m->sub)) {
			t = (unsigned)(m->sub - SUB_TLSA(0));
			tlsa[t] = worse(tlsa[t], res);
		} else if (m->sub >= 0 && !SUB_IS_VAL(m->sub)) {
			t = (unsigned)m->sub / 2;
			if (t < RESOLVE_MX_MAX && res == V_BOGUS)
				lk->ts[t].bogus = true;
			else if (t < RESOLVE_MX_MAX && res == V_INSECURE)
				lk->ts[t].insecure = true;
		}
	}
	if (lk->mx)
		lk->mx_sec = mx_seen ? sec_of(mx) : RESOLVE_SEC_INSECURE;
	lk->authenticated = lk->mx_sec == RESOLVE_SEC_SECURE;
	for (unsigned i = 0; i < lk->ntargets; i++) {
		struct resolve_target *t = &lk->targets[i];
		const struct target_state *ts = &lk->ts[i];
		bool secure = lk->mx_sec == RESOLVE_SEC_SECURE &&
		    !ts->insecure && !ts->bogus;

		lk->authenticated &= !ts->insecure && !ts->bogus;
		if (t->tlsa == RESOLVE_TLSA_UNASKED)
			continue;
		/* As under trust-ad: TLSA only for a secure host. */
		if (!secure) {
			t->tlsa = RESOLVE_TLSA_UNASKED;
			t->ntlsa = 0;
		} else if (tlsa[i] == V_BOGUS && t->tlsa != RESOLVE_TLSA_FAIL) {
			char why[sizeof(t->tlsa_why)];

			t->tlsa = RESOLVE_TLSA_FAIL;
			t->ntlsa = 0;
			snprintf(why, sizeof(why), "TLSA records of %.60s "
			    "failed DNSSEC validation", t->host);
			memcpy(t->tlsa_why, why, sizeof(why));
		} else if (tlsa[i] == V_INSECURE) {
			t->tlsa = RESOLVE_TLSA_NONE;
			t->ntlsa = 0;
		}
	}
}
