/*
 * limit - every size limit of taskwatch, each defined once, as SQLite's
 * sqliteLimit.h does. A limit that two modules must agree on lives here and
 * nowhere else; code, tests and benchmarks refer to these names. The
 * documentation states the values a user relies on: the public header
 * (tw_task_fail), docs/protocol.md and docs/collector.md. Change a value
 * here and there together.
 *
 * Two families. What the agent keeps of a task's strings (LIMIT_*) is a
 * promise to the host; what the wire accepts (PROTO_*) is a promise
 * between agent and collector, and is at least as large, so every agent
 * string fits the wire whatever the agent's version.
 */
#ifndef TW_LIMIT_H
#define TW_LIMIT_H

/* ---- strings a task reports: the agent truncates to these ------------- */

#define LIMIT_ERROR_TYPE 256u     /* tw_task_fail(): error type */
#define LIMIT_ERROR_MESSAGE 4096u /* tw_task_fail(): message */
#define LIMIT_ERROR_DETAIL 32768u /* tw_task_fail(): detail (a traceback) */
#define LIMIT_DROP_REASON 4096u   /* tw_task_drop(): reason */
#define LIMIT_NAME 1024u          /* task names and batch labels */
/* The three strings of one FAIL, back to back: the sender's scratch copy. */
#define LIMIT_FAIL_STRINGS                                                     \
  (LIMIT_ERROR_TYPE + LIMIT_ERROR_MESSAGE + LIMIT_ERROR_DETAIL)

/* ---- the wire (docs/protocol.md) --------------------------------------- */

#define PROTO_FRAME_MAX (1u << 20) /* a frame's length field, at most */
#define PROTO_SHORT_MAX 4096u      /* strings other than FAIL detail */
#define PROTO_DETAIL_MAX 65536u    /* FAIL detail (a long string) */
#define PROTO_IDENT_MAX 256u       /* HELLO service, host and token */
#define PROTO_LINK_MAX 256u        /* LINK traceparent (version 2 on) */
/* Proof of instance ownership (docs/protocol.md, "Ownership"): an Ed25519
 * public key in HELLO, a nonce in CHALLENGE, a signature in PROOF. The
 * wire limits leave room; the sizes are what version 2 requires. */
#define PROTO_KEY_MAX 64u
#define PROTO_SIGNATURE_MAX 128u
#define PROTO_KEY_SIZE 32u       /* an Ed25519 public key */
#define PROTO_NONCE_SIZE 32u     /* CHALLENGE's nonce */
#define PROTO_SIGNATURE_SIZE 64u /* an Ed25519 signature */
/* Before the handshake a peer may send nothing longer than the largest
 * HELLO of this version (proto_hello_frame_max()) plus this much, so a
 * newer agent whose HELLO grew a little still reaches the version
 * negotiation instead of being cut off as oversized. */
#define PROTO_HELLO_SPARE 256u

/* ---- the agent's memory ----------------------------------------------- */

/* Smaller buffer_bytes settings are raised to this: below it the fixed
 * parts (name table, one ring, resend chunks) would not fit. */
#define LIMIT_AGENT_BUFFER_MIN (1024u * 1024u)
#define INTERN_MAX_IDS 4096u /* string ids 1 .. INTERN_MAX_IDS - 1 */
#define INTERN_ARENA 131072u /* bytes of name and label text */
#define RING_ID_BLOCK 256    /* task and batch ids a ring takes at a time */
/* One EVENTS frame of the resend buffer: a fraction of PROTO_FRAME_MAX, so
 * a frame never waits long for company and a resend is fine-grained; and
 * room for two failures with every string at its limit (LIMIT_FAIL_STRINGS
 * and their fields, tests/unit/test_resend.c). At 64 KiB each such failure
 * took a chunk of its own, 27 KiB of it unused: 64 threads failing at once
 * with full tracebacks needed 4 MiB of resend chunks at the default 8 MiB
 * budget, whose other half the rings hold, and a collector slow to ack
 * made the agent cut the last ones' strings. */
#define RESEND_CHUNK_BYTES (76u * 1024u)
/* The agent's receive buffer: it only ever reads WELCOME, ACK and ERROR. */
#define AGENT_READ_BYTES 8192u
/* The reason of the last refusal the agent keeps (tw__sender_refusal()). */
#define LIMIT_REFUSAL_TEXT 256u

/* ---- collector URLs (common/url.h) ------------------------------------- */

#define URL_HOST_MAX 255u /* a DNS name's longest text form */
/* A unix socket path, without its NUL: sizeof(sockaddr_un.sun_path) - 1
 * on Linux. url.c checks the two agree. */
#define URL_PATH_MAX 107u

#endif /* TW_LIMIT_H */
