/*
 * sanitize - the one display sanitizer between stored task strings and a
 * terminal (docs/design.md, non-negotiable 4). Strings from tasks are any bytes;
 * what comes out is printable text that cannot move the cursor, change
 * colours, set the clipboard or reorder the line, measured in terminal
 * columns rather than bytes.
 *
 * Every input character becomes exactly one of:
 *   - itself, when it is printable (ASCII 0x20-0x7E, or a Unicode character
 *     that wcwidth() under a UTF-8 LC_CTYPE says is 1 or 2 columns wide);
 *   - a zero-width combining mark, kept only right after a printed
 *     character and at most SANITIZE_MAX_COMBINING of them in a row;
 *   - a visible placeholder, one column wide:
 *       C0 controls 0x00-0x1F  -> the Control Pictures U+2400-U+241F
 *                                 (ESC is "␛", CR "␍", BS "␈", LF "␊")
 *       DEL 0x7F               -> "␡" (U+2421)
 *       invalid UTF-8 (each bad byte, overlong forms, surrogates, values
 *       past U+10FFFF), C1 controls U+0080-U+009F (so raw 0x9B and its
 *       encoded form C2 9B alike), bidi controls (U+061C, U+200E, U+200F,
 *       U+202A-U+202E, U+2066-U+2069), other invisible format characters
 *       (U+200B-U+200D, U+2028, U+2029, U+2060-U+2064, U+206A-U+206F,
 *       U+FEFF, U+FFF9-U+FFFB, tags U+E0000-U+E007F) and anything wcwidth()
 *       calls unprintable                          -> "�" (U+FFFD)
 *   - nothing, for the variation selectors U+FE00-U+FE0F and U+E0100-U+E01EF:
 *     terminals disagree on whether they widen the character before them,
 *     so dropping them keeps columns aligned.
 * An escape sequence is thereby shown as text ("␛[31m", "␛]52;c;...␇"):
 * without its ESC, BEL or C1 byte no terminal interprets it.
 *
 * In ASCII mode (SANITIZE_ASCII, for terminals whose locale is not UTF-8)
 * only bytes 0x20-0x7E are written: controls become caret notation ("^[",
 * "^?", two columns), and every other placeholder or non-ASCII character
 * becomes "?" (one column per character, whatever its width).
 *
 * Widths do not depend on the process locale: UTF-8 is decoded here, and
 * wcwidth() runs under a "C.UTF-8" locale object installed with uselocale()
 * for the duration of the call only. When the C library has no UTF-8
 * locale, a built-in table of East Asian wide ranges is used instead.
 *
 * All functions are thread-safe and never allocate, except sanitize_dup().
 */
#ifndef TW_SANITIZE_H
#define TW_SANITIZE_H

#include <stddef.h>

/* Output only printable ASCII (for non-UTF-8 terminals). */
#define SANITIZE_ASCII 1u
/* When the text does not fit, end it with "…" ("~" in ASCII mode) in the
 * last column instead of cutting it silently. */
#define SANITIZE_ELLIPSIS 2u

/* The largest output of sanitize_next(): a 4-byte character or placeholder,
 * or a 2-byte caret form. */
#define SANITIZE_CHAR_MAX 4
/* Combining marks kept after one printed character. */
#define SANITIZE_MAX_COMBINING 2

/*
 * Sanitizes one character of in[*pos .. len): writes its display form to
 * out (not NUL-terminated), sets *width to its columns (0 for a combining
 * mark or a dropped character, else 1 or 2) and advances *pos past the
 * input it consumed (at least one byte). *combining counts the combining
 * marks since the last printed character; start it at -1 (meaning "no
 * printed character yet") and pass the same variable for every character
 * of one string. Returns the number of bytes written to out, 0 when the
 * character is dropped. Requires *pos < len.
 */
size_t sanitize_next(const char *in, size_t len, size_t *pos, unsigned flags,
                     int *combining, char out[SANITIZE_CHAR_MAX], int *width);

/*
 * Sanitizes in[0 .. len) into out (capacity outsize, always NUL-terminated
 * when outsize > 0), keeping at most max_cols columns (a negative max_cols
 * means no limit) and never splitting a character; it also stops before
 * the output would overflow. in may hold NUL bytes (shown as "␀"); in may
 * be NULL when len is 0. out may be NULL with outsize 0 to only measure.
 * Returns the columns written.
 */
int sanitize(const char *in, size_t len, int max_cols, unsigned flags,
             char *out, size_t outsize);

/* The columns the whole of in[0 .. len) takes once sanitized. */
int sanitize_width(const char *in, size_t len, unsigned flags);

/*
 * As sanitize() into a new NUL-terminated string that the caller free()s;
 * *cols (when not NULL) gets the columns used. Aborts on out-of-memory
 * (tools only; it uses xmalloc).
 */
char *sanitize_dup(const char *in, size_t len, int max_cols, unsigned flags,
                   int *cols);

/*
 * Whether the process's current LC_CTYPE uses UTF-8 (call setlocale(LC_ALL,
 * "") first). Tools use it to choose SANITIZE_ASCII for their terminal;
 * sanitizing itself never looks at the process locale.
 */
int sanitize_locale_is_utf8(void);

#endif /* TW_SANITIZE_H */
