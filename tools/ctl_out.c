/*
 * ctl_out.c - escrowctl's output helpers: JSON writer, human formatting of
 * wire fields, aligned tables, durations, bodies. See ctl_out.h.
 *
 * Fields are handled through wire/'s reflection (wire_field_next,
 * wire_field_type, wire_field_ptr), so a field added to wire/fields.def
 * shows up in `--json` output and in the tables without touching this file.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_out.h"
#include "wire/xmalloc.h"

/* ---- JSON --------------------------------------------------------------- */

void json_str(FILE *f, const char *p, size_t len)
{
	bool utf8 = wire_utf8_valid(p, len);
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		switch (c) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		default:
			if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	fputc('"', f);
}

static void json_items(FILE *f, const wire_items *it, json_key_fn key_of);

/* The JSON writers per field type; @key is the output key. */
static void j_U64(FILE *f, const char *key, const uint64_t *v)
{
	(void)key;
	fprintf(f, "%llu", (unsigned long long)*v);
}

static void j_I64(FILE *f, const char *key, const int64_t *v)
{
	(void)key;
	fprintf(f, "%lld", (long long)*v);
}

static void j_BOOL(FILE *f, const char *key, const bool *v)
{
	(void)key;
	fputs(*v ? "true" : "false", f);
}

static void j_STR(FILE *f, const char *key, const wire_str *v)
{
	(void)key;
	json_str(f, v->p, v->len);
}

static void j_BIN(FILE *f, const char *key, const wire_str *v)
{
	(void)key;
	if (wire_utf8_valid(v->p, v->len)) {
		json_str(f, v->p, v->len);
	} else {
		fputc('"', f);
		base64(f, (const unsigned char *)v->p, v->len);
		fputc('"', f);
	}
}

static void j_ID(FILE *f, const char *key, const escrow_id_t *v)
{
	char hex[33];
	(void)key;
	fprintf(f, "\"%s\"", escrow_id_fmt(v, hex));
}

static void j_STRS(FILE *f, const char *key, const wire_strs *v)
{
	(void)key;
	fputc('[', f);
	for (uint32_t i = 0; i < v->n; i++) {
		if (i)
			fputc(',', f);
		json_str(f, v->v[i].p, v->v[i].len);
	}
	fputc(']', f);
}

static void j_PROPS(FILE *f, const char *key, const wire_props *v)
{
	(void)key;
	fputc('{', f);
	for (uint32_t i = 0; i < v->n; i++) {
		if (i)
			fputc(',', f);
		json_str(f, v->k[i].p, v->k[i].len);
		fputc(':', f);
		json_str(f, v->v[i].p, v->v[i].len);
	}
	fputc('}', f);
}

static void j_U64S(FILE *f, const char *key, const wire_u64s *v)
{
	(void)key;
	fputc('[', f);
	for (uint32_t i = 0; i < v->n; i++)
		fprintf(f, "%s%llu", i ? "," : "", (unsigned long long)v->v[i]);
	fputc(']', f);
}

static void j_ITEMS(FILE *f, const char *key, const wire_items *v)
{
	(void)key;
	json_items(f, v, NULL);
}

static void json_items(FILE *f, const wire_items *it, json_key_fn key_of)
{
	fputc('[', f);
	for (uint32_t i = 0; i < it->n; i++) {
		if (i)
			fputc(',', f);
		json_msg(f, &it->v[i], 0, NULL, key_of);
	}
	fputc(']', f);
}

/* j_value writes the JSON value of a field of type @t at @v. */
static void j_value(FILE *f, const char *key, wire_type t, const void *v)
{
	switch (t) {
	case WIRE_T_U64: j_U64(f, key, v); break;
	case WIRE_T_I64: j_I64(f, key, v); break;
	case WIRE_T_BOOL: j_BOOL(f, key, v); break;
	case WIRE_T_STR: j_STR(f, key, v); break;
	case WIRE_T_BIN: j_BIN(f, key, v); break;
	case WIRE_T_ID: j_ID(f, key, v); break;
	case WIRE_T_STRS: j_STRS(f, key, v); break;
	case WIRE_T_PROPS: j_PROPS(f, key, v); break;
	case WIRE_T_U64S: j_U64S(f, key, v); break;
	case WIRE_T_ITEMS: j_ITEMS(f, key, v); break;
	case WIRE_T__COUNT: break;
	}
}

void json_msg(FILE *f, const wire_msg *m, wire_mask skip, const char *items_key,
              json_key_fn key_of)
{
	int first = 1;
	skip |= WF(RID) | WF(OK);
	fputc('{', f);
	for (wire_field fl = wire_field_next(m, -1); fl < WIRE_F__COUNT;
	     fl = wire_field_next(m, fl)) {
		if (skip & WIRE_BIT(fl))
			continue;
		const char *key = key_of && key_of(fl) ? key_of(fl) : wire_field_key(fl);
		if (fl == WIRE_F_ITEMS && items_key)
			key = items_key;
		else if (fl == WIRE_F_BODY && !wire_utf8_valid(m->body.p, m->body.len))
			key = "body_base64";
		fputs(first ? "" : ",", f);
		first = 0;
		json_cstr(f, key);
		fputc(':', f);
		if (fl == WIRE_F_ITEMS)
			json_items(f, &m->items, key_of);
		else
			j_value(f, key, wire_field_type(fl), wire_field_ptr(m, fl));
	}
	fputc('}', f);
}

/* ---- values for humans --------------------------------------------------- */

/* Fields holding a duration in ms, and fields holding a Unix-ms time. */
static const wire_mask dur_fields = WF(RETENTION_MS) | WF(UPTIME_MS) | WF(ACK_TIMEOUT_MS) |
                                   WF(DELAY_MS) | WF(BACKOFF_MS) | WF(TIMEOUT_MS) |
                                   WF(DISABLE_AFTER_MS) | WF(LATENCY_MS);
static const wire_mask time_fields = WF(BORN_MS) | WF(STORED_MS) | WF(AT_MS);

const char *fmt_dur(uint64_t ms, char *buf, size_t n)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
	size_t used = 0;
	if (ms == 0) {
		snprintf(buf, n, "0s");
		return buf;
	}
	buf[0] = 0;
	for (size_t i = 0; i < sizeof units / sizeof units[0] && used < n; i++) {
		if (ms >= units[i].ms) {
			int w = snprintf(buf + used, n - used, "%llu%s",
			                 (unsigned long long)(ms / units[i].ms), units[i].unit);
			if (w < 0)
				break;
			used += (size_t)w;
			ms %= units[i].ms;
		}
	}
	return buf;
}

const char *fmt_time(uint64_t ms, char *buf, size_t n)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];
	if (!gmtime_r(&s, &tm) || !strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(buf, n, "%llu", (unsigned long long)ms);
	else
		snprintf(buf, n, "%s.%03uZ", tmp, (unsigned)(ms % 1000));
	return buf;
}

int parse_dur(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	uint64_t v = 0;
	const char *p = s;
	if (!s || !isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(p, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].ms)
				return -1;
			*ms = v * units[i].ms;
			return 0;
		}
	}
	return -1;
}

bool body_is_text(const char *p, size_t len)
{
	if (!wire_utf8_valid(p, len))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
			return false;
	}
	return true;
}

void base64(FILE *f, const unsigned char *p, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputc(tab[(v >> 6) & 63], f);
		fputc(tab[v & 63], f);
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputs("==", f);
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		fputc(tab[v >> 18], f);
		fputc(tab[(v >> 12) & 63], f);
		fputc(tab[(v >> 6) & 63], f);
		fputc('=', f);
	}
}

/* h_text writes a STR for a human: control characters become '?'. */
static void h_text(FILE *f, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
	}
}

/* The human writers per field type; @fld picks durations and times. */
static void h_U64(FILE *f, wire_field fld, const uint64_t *v)
{
	char buf[64];
	if (dur_fields & WIRE_BIT(fld))
		fputs(fmt_dur(*v, buf, sizeof buf), f);
	else if (time_fields & WIRE_BIT(fld))
		fputs(*v ? fmt_time(*v, buf, sizeof buf) : "-", f);
	else
		fprintf(f, "%llu", (unsigned long long)*v);
}

static void h_I64(FILE *f, wire_field fld, const int64_t *v)
{
	(void)fld;
	fprintf(f, "%lld", (long long)*v);
}

static void h_BOOL(FILE *f, wire_field fld, const bool *v)
{
	(void)fld;
	fputs(*v ? "yes" : "no", f);
}

static void h_STR(FILE *f, wire_field fld, const wire_str *v)
{
	(void)fld;
	h_text(f, v->p, v->len);
}

static void h_BIN(FILE *f, wire_field fld, const wire_str *v)
{
	(void)fld;
	if (body_is_text(v->p, v->len)) {
		fwrite(v->p, 1, v->len, f);
	} else {
		fputs("base64:", f);
		base64(f, (const unsigned char *)v->p, v->len);
	}
}

static void h_ID(FILE *f, wire_field fld, const escrow_id_t *v)
{
	char hex[33];
	(void)fld;
	fputs(escrow_id_fmt(v, hex), f);
}

static void h_STRS(FILE *f, wire_field fld, const wire_strs *v)
{
	(void)fld;
	for (uint32_t i = 0; i < v->n; i++) {
		if (i)
			fputc(',', f);
		h_text(f, v->v[i].p, v->v[i].len);
	}
}

static void h_PROPS(FILE *f, wire_field fld, const wire_props *v)
{
	(void)fld;
	for (uint32_t i = 0; i < v->n; i++) {
		if (i)
			fputc(' ', f);
		h_text(f, v->k[i].p, v->k[i].len);
		fputc('=', f);
		h_text(f, v->v[i].p, v->v[i].len);
	}
}

static void h_U64S(FILE *f, wire_field fld, const wire_u64s *v)
{
	char buf[64];
	for (uint32_t i = 0; i < v->n; i++) {
		if (i)
			fputc(',', f);
		if (dur_fields & WIRE_BIT(fld))
			fputs(fmt_dur(v->v[i], buf, sizeof buf), f);
		else
			fprintf(f, "%llu", (unsigned long long)v->v[i]);
	}
}

static void h_ITEMS(FILE *f, wire_field fld, const wire_items *v)
{
	if (fld != WIRE_F_ATTEMPTS) {
		fprintf(f, "(%u)", v->n);
		return;
	}
	/* a push group's delivery log: "#1 TIME 500 12ms; #2 TIME - 10s timeout" */
	char t[64], d[64];
	for (uint32_t i = 0; i < v->n; i++) {
		const wire_msg *a = &v->v[i];
		fprintf(f, "%s#%llu %s ", i ? "; " : "", (unsigned long long)a->attempt,
		        fmt_time(a->at_ms, t, sizeof t));
		if (a->status)
			fprintf(f, "%llu", (unsigned long long)a->status);
		else
			fputc('-', f);
		fprintf(f, " %s", fmt_dur(a->latency_ms, d, sizeof d));
		if (WIRE_HAS(a, REASON) && a->reason.len) {
			fputc(' ', f);
			h_text(f, a->reason.p, a->reason.len);
		}
	}
}

char *fmt_field(const wire_msg *m, wire_field fld)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f;
	if ((unsigned)fld >= WIRE_F__COUNT || !(m->has & WIRE_BIT(fld)))
		return NULL;
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	const void *v = wire_field_ptr(m, fld);
	switch (wire_field_type(fld)) {
	case WIRE_T_U64: h_U64(f, fld, v); break;
	case WIRE_T_I64: h_I64(f, fld, v); break;
	case WIRE_T_BOOL: h_BOOL(f, fld, v); break;
	case WIRE_T_STR: h_STR(f, fld, v); break;
	case WIRE_T_BIN: h_BIN(f, fld, v); break;
	case WIRE_T_ID: h_ID(f, fld, v); break;
	case WIRE_T_STRS: h_STRS(f, fld, v); break;
	case WIRE_T_PROPS: h_PROPS(f, fld, v); break;
	case WIRE_T_U64S: h_U64S(f, fld, v); break;
	case WIRE_T_ITEMS: h_ITEMS(f, fld, v); break;
	case WIRE_T__COUNT: break;
	}
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

const char *field_label(wire_field fld, bool upper, char *buf, size_t n)
{
	const char *k = wire_field_key(fld);
	size_t len = strlen(k);
	if (len > 3 && strcmp(k + len - 3, "_ms") == 0)
		len -= 3;
	if (len >= n)
		len = n - 1;
	for (size_t i = 0; i < len; i++)
		buf[i] = upper ? (char)toupper((unsigned char)k[i]) : k[i];
	buf[len] = 0;
	return buf;
}

/* ---- tables -------------------------------------------------------------- */

void table_init(table *t, int ncols, const char *const *hdr)
{
	char **cells = xcalloc((size_t)ncols, sizeof *cells);
	memset(t, 0, sizeof *t);
	t->ncols = ncols;
	for (int c = 0; c < ncols; c++)
		cells[c] = xstrdup(hdr[c]);
	table_row(t, cells);
}

void table_row(table *t, char **cells)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 16;
		t->rows = xrealloc(t->rows, (size_t)t->cap * sizeof *t->rows);
	}
	t->rows[t->nrows++] = cells;
}

/* cell_width counts UTF-8 characters, not bytes, so accents do not skew. */
static size_t cell_width(const char *s)
{
	size_t w = 0;
	for (; s && *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return s ? w : 1;
}

void table_print(const table *t, FILE *f)
{
	size_t *w = xcalloc((size_t)t->ncols, sizeof *w);
	for (int r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncols; c++) {
			size_t cw = cell_width(t->rows[r][c]);
			if (cw > w[c])
				w[c] = cw;
		}
	for (int r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++) {
			const char *s = t->rows[r][c] ? t->rows[r][c] : "-";
			fputs(s, f);
			if (c + 1 < t->ncols)
				fprintf(f, "%*s", (int)(w[c] - cell_width(s) + 2), "");
		}
		fputc('\n', f);
	}
	free(w);
}

void table_free(table *t)
{
	for (int r = 0; r < t->nrows; r++) {
		for (int c = 0; c < t->ncols; c++)
			free(t->rows[r][c]);
		free(t->rows[r]);
	}
	free(t->rows);
	memset(t, 0, sizeof *t);
}

/* columns fills @cols with @first, then the fields of @present in order. */
static int columns(int *cols, const int *first, wire_mask present, wire_mask skip)
{
	int n = 0;
	wire_mask used = 0;
	for (; first && *first >= 0; first++) {
		cols[n++] = *first;
		used |= WIRE_BIT(*first);
	}
	for (int fld = 0; fld < WIRE_F__COUNT; fld++) {
		wire_mask bit = WIRE_BIT(fld);
		if ((present & bit) && !(used & bit) && !(skip & bit))
			cols[n++] = fld;
	}
	return n;
}

void items_table(FILE *f, const wire_items *items, const int *first, wire_mask skip,
                 const char *(*label_of)(wire_field))
{
	int cols[WIRE_F__COUNT + 1];
	const char *hdr[WIRE_F__COUNT + 1];
	char labels[WIRE_F__COUNT + 1][32];
	wire_mask present = 0;
	table t;
	skip |= WF(RID) | WF(OK) | WF(ITEMS);
	for (uint32_t i = 0; i < items->n; i++)
		present |= items->v[i].has;
	int n = columns(cols, first, present, skip);
	for (int c = 0; c < n; c++) {
		const char *l = label_of ? label_of((wire_field)cols[c]) : NULL;
		hdr[c] = field_label((wire_field)cols[c], true, labels[c], sizeof labels[c]);
		if (l) {
			size_t i = 0;
			for (; l[i] && i + 1 < sizeof labels[c]; i++)
				labels[c][i] = (char)toupper((unsigned char)l[i]);
			labels[c][i] = 0;
		}
	}
	table_init(&t, n, hdr);
	for (uint32_t i = 0; i < items->n; i++) {
		char **cells = xcalloc((size_t)n, sizeof *cells);
		for (int c = 0; c < n; c++)
			cells[c] = fmt_field(&items->v[i], (wire_field)cols[c]);
		table_row(&t, cells);
	}
	table_print(&t, f);
	table_free(&t);
}

void record_print(FILE *f, const wire_msg *m, const int *first, wire_mask skip,
                  const char *(*label_of)(wire_field))
{
	int cols[WIRE_F__COUNT + 1];
	char labels[WIRE_F__COUNT + 1][32];
	const char *lab[WIRE_F__COUNT + 1];
	size_t w = 0;
	skip |= WF(RID) | WF(OK) | WF(ITEMS);
	int n = columns(cols, NULL, m->has, skip);
	int k = 0;
	/* @first order first, but only for the fields actually present */
	int order[WIRE_F__COUNT + 1];
	wire_mask done = 0;
	for (; first && *first >= 0; first++)
		if ((m->has & WIRE_BIT(*first)) && !(skip & WIRE_BIT(*first))) {
			order[k++] = *first;
			done |= WIRE_BIT(*first);
		}
	for (int c = 0; c < n; c++)
		if (!(done & WIRE_BIT(cols[c])))
			order[k++] = cols[c];
	for (int c = 0; c < k; c++) {
		lab[c] = label_of ? label_of((wire_field)order[c]) : NULL;
		if (!lab[c])
			lab[c] = field_label((wire_field)order[c], false, labels[c], sizeof labels[c]);
		if (strlen(lab[c]) > w)
			w = strlen(lab[c]);
	}
	for (int c = 0; c < k; c++) {
		char *v = fmt_field(m, (wire_field)order[c]);
		fprintf(f, "%s:%*s%s\n", lab[c], (int)(w - strlen(lab[c]) + 2), "", v ? v : "-");
		free(v);
	}
}
