/*
 * ctl_out.h - escrowctl's output and argument helpers: the JSON writer, value
 * formatting for the human tables, aligned tables, durations and bodies.
 *
 * Everything here writes to a FILE and keeps no global state. Nothing here
 * talks to the broker; see escrowctl.c for that.
 */
#ifndef ESCROW_CTL_OUT_H
#define ESCROW_CTL_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "wire/wire.h"

/* ---- JSON (output only) ------------------------------------------------ */

/*
 * json_str writes @p as a JSON string literal, quotes included. Quotes,
 * backslashes and control characters are escaped. Bytes that are not valid
 * UTF-8 are written as \u00XX (read as Latin-1), so the output is always
 * valid JSON.
 */
void json_str(FILE *f, const char *p, size_t len);
static inline void json_cstr(FILE *f, const char *s)
{
	json_str(f, s, wire_cstr(s).len);
}

/* A JSON key for field @f where it means something more precise than its
 * wire key (stored_ms -> created_ms in a topic record), or NULL: the wire key. */
typedef const char *(*json_key_fn)(wire_field f);

/*
 * json_msg writes @m as one JSON object: every field present, under its wire
 * key (or the one @key_of gives, NULL-able; also applied to nested items),
 * except those in @skip (a WF() mask) and op/rid/ok, which never appear. ids
 * are 32 hex digits; a body is "body" when it is valid UTF-8, else
 * "body_base64"; items are written under @items_key (NULL: "items").
 */
void json_msg(FILE *f, const wire_msg *m, wire_mask skip, const char *items_key,
              json_key_fn key_of);

/* ---- values for humans ------------------------------------------------- */

/*
 * fmt_field returns a malloc'd text for field @fld of @m for a human table
 * or record: durations as "72h" or "1m30s", Unix-ms times as ISO 8601 UTC,
 * lists comma-separated, bodies as text or "base64:...". NULL when the field
 * is absent or memory runs out.
 */
char *fmt_field(const wire_msg *m, wire_field fld);

/*
 * field_label returns the column or row label for @fld in @buf: the key
 * without a "_ms" suffix, upper-cased when @upper ("RETENTION").
 */
const char *field_label(wire_field fld, bool upper, char *buf, size_t n);

/* fmt_dur writes a duration in ms as "500ms", "30s", "1h2m3s" into @buf. */
const char *fmt_dur(uint64_t ms, char *buf, size_t n);

/* fmt_time writes Unix ms as "2026-11-21T21:33:00.123Z" into @buf. */
const char *fmt_time(uint64_t ms, char *buf, size_t n);

/*
 * parse_dur reads a duration: digits with an optional unit ms, s, m, h or d
 * (no unit: ms). Returns 0 and sets *ms, or -1 on bad text or overflow.
 */
int parse_dur(const char *s, uint64_t *ms);

/*
 * body_is_text: true when @p is valid UTF-8 without NULs or control
 * characters other than tab, newline and carriage return, i.e. safe to show
 * as it is.
 */
bool body_is_text(const char *p, size_t len);

/* base64 writes the standard base64 (RFC 4648, padded) of @p to @f. */
void base64(FILE *f, const unsigned char *p, size_t len);

/* ---- aligned tables ---------------------------------------------------- */

/* A table of text cells; columns are padded to their widest cell. */
typedef struct table {
	int ncols;
	int nrows;   /* rows including the header row */
	int cap;     /* rows allocated */
	char ***rows; /* rows[r][c], owned, NULL cell prints "-" */
} table;

/* table_init starts @t with a header row of @ncols labels (copied). Aborts
 * when out of memory (wire/xmalloc.h), as every escrowctl allocation. */
void table_init(table *t, int ncols, const char *const *hdr);
/* table_row appends a row and takes ownership of the @ncols malloc'd cells. */
void table_row(table *t, char **cells);
/* table_print writes the table, two spaces between columns, last unpadded. */
void table_print(const table *t, FILE *f);
void table_free(table *t);

/*
 * items_table prints @items as a table: the columns of @first (WIRE_F_
 * indexes, -1 ended) always, then every other field present in any item, in
 * fields.def order, except those in @skip (a WF() mask). @label_of may
 * rename a column (return NULL to keep the upper-cased key).
 */
void items_table(FILE *f, const wire_items *items, const int *first, wire_mask skip,
                 const char *(*label_of)(wire_field));

/*
 * record_print prints every field of @m present and not in @skip as
 * "label:  value" lines with aligned values, in @first order then
 * fields.def order. @label_of may rename a field (return NULL to keep it).
 */
void record_print(FILE *f, const wire_msg *m, const int *first, wire_mask skip,
                  const char *(*label_of)(wire_field));

#endif
